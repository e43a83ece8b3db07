//! The mapping section: where the mapping comes from when the catalog's integration record has none,
//! and what its jq may read.

use std::path::PathBuf;

use super::{ConfigError, Lookup, Problems};

/// Where the mapping comes from when the catalog's integration record has none.
#[derive(Debug, Clone)]
pub enum MappingSetting {
    /// `MAPPING_FILE`.
    File(PathBuf),
    /// `MAPPING`: the port-app-config itself (YAML or JSON).
    Inline(String),
    /// The shipped default.
    Default,
}

#[derive(Debug, Clone)]
pub struct MappingSettings {
    pub source: MappingSetting,
    /// Lets jq mappings read the process environment (`env`, `$ENV`). Off: a mapping must not be able to
    /// read the PAT or the catalog secret out of the function's environment.
    pub allow_env: bool,
}

impl MappingSettings {
    /// The section alone, every problem of it reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(Lookup::new(&get))
    }

    pub(crate) fn parse(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let source = match (get.get("MAPPING_FILE"), get.get("MAPPING")) {
            (Some(_), Some(_)) => {
                problems.push(ConfigError::Invalid {
                    name: "MAPPING",
                    reason: "set MAPPING_FILE or MAPPING, not both".into(),
                });
                MappingSetting::Default
            }
            (Some(path), None) => MappingSetting::File(PathBuf::from(path)),
            (None, Some(text)) => MappingSetting::Inline(text),
            (None, None) => MappingSetting::Default,
        };
        let allow_env = problems
            .take(get.bool("MAPPING_ALLOW_ENV", false))
            .unwrap_or(false);
        problems.check()?;
        Ok(Self { source, allow_env })
    }
}
