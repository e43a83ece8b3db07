//! Typed settings, read once at cold start from the resolved environment ([`Env`]: canonical names, the
//! peer's names as aliases, secrets from Secrets Manager or SSM); secrets never print. Every setting has
//! one canonical name ([`names::SETTINGS`], documented in the README); missing or malformed ones fail at
//! start, all together, each with its name.
//!
//! One section per concern ([`AdoSettings`], [`CatalogTarget`], [`MappingSettings`],
//! [`WebhookCredentials`], [`QueueSettings`], [`ResyncSchedule`], [`ActionSettings`]), each parsed by its own function that
//! reports all of its problems. Sections hold plain typed values: this module imports no adapter, the
//! adapters build themselves from their section (the webhook's and the subscriptions' settings both
//! take their credentials from the one [`WebhookCredentials`] parse).

mod actions;
mod ado;
mod catalog;
mod env;
mod mapping;
pub mod names;
mod queue;
pub mod secrets;
mod webhook;

use secrecy::SecretString;

pub use actions::ActionSettings;
pub use ado::{AdoCredential, AdoSettings, DEFAULT_AUTHORITY, ServicePrincipal};
pub use catalog::{CatalogTarget, PORT_EU_BASE_URL, PORT_US_BASE_URL};
pub use env::Env;
pub use mapping::{MappingSetting, MappingSettings};
pub use queue::{QueueSettings, ResyncSchedule};
pub use webhook::{DEFAULT_WEBHOOK_USERNAME, WebhookCredentials};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing setting {name}: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A secret setting whose source (`variable`, naming `from`) could not be read.
    #[error("cannot read setting {name} from {variable}: {from}: {reason}")]
    Secret {
        name: &'static str,
        variable: String,
        from: Box<secrets::SecretSource>,
        #[source]
        reason: Box<secrets::SecretError>,
    },
    #[error("{} configuration problems:\n  - {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// The single problems this error is made of.
    pub fn into_list(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Several(inner) => inner.into_iter().flat_map(Self::into_list).collect(),
            one => vec![one],
        }
    }

    /// `Ok` when there is no problem; one problem as itself; several together.
    pub fn check(problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        // Nested lists flatten so the message stays one list; a setting two sections read (e.g.
        // INTEGRATION_IDENTIFIER) is named once.
        let mut seen = std::collections::HashSet::new();
        let mut problems: Vec<ConfigError> = problems
            .into_iter()
            .flat_map(Self::into_list)
            .filter(|p| seen.insert(p.to_string()))
            .collect();
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }

    /// Both values, or every problem of both reported together.
    pub fn both<A, B>(
        a: Result<A, ConfigError>,
        b: Result<B, ConfigError>,
    ) -> Result<(A, B), ConfigError> {
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (a, b) => Err(Self::check(a.err().into_iter().chain(b.err()).collect())
                .expect_err("at least one is an error")),
        }
    }
}

/// Reads a setting by canonical name; blank values count as unset.
#[derive(Clone, Copy)]
pub(crate) struct Lookup<'a>(&'a dyn Fn(&str) -> Option<String>);

impl<'a> Lookup<'a> {
    pub(crate) fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self(get)
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A whole number in `min..=max`, `None` when unset.
    pub(crate) fn num(
        &self,
        name: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        self.get(name)
            .map(|v| parse_num(name, &v, min, max))
            .transpose()
    }

    /// A boolean, `default` when unset.
    pub(crate) fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        parse_bool(name, self.get(name), default)
    }
}

/// The problems of one parse, gathered so that every one is reported at once.
#[derive(Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(crate) fn push(&mut self, problem: ConfigError) {
        self.0.push(problem);
    }

    /// The value, or `None` with its problems kept.
    pub(crate) fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.push(e)).ok()
    }

    /// `Ok` when nothing was wrong; otherwise every problem together.
    pub(crate) fn check(self) -> Result<(), ConfigError> {
        ConfigError::check(self.0)
    }
}

/// `ADO_EXCLUDED_TAGS`: projects carrying any of these tags are skipped by every kind.
pub fn excluded_tags_from_lookup(get: impl Fn(&str) -> Option<String>) -> Vec<String> {
    excluded_tags(Lookup::new(&get))
}

fn excluded_tags(get: Lookup<'_>) -> Vec<String> {
    get.get("ADO_EXCLUDED_TAGS")
        .map(|t| parse_list(&t))
        .unwrap_or_default()
}

/// Everything a resync needs. Built once at cold start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ado: AdoSettings,
    pub catalog: CatalogTarget,
    /// Ties this integration's entities together (`$datasource` suffix); use the peer's identifier to take
    /// over the entities it created.
    pub integration_identifier: String,
    pub mapping: MappingSettings,
    /// Projects carrying any of these tags are skipped by every kind.
    pub excluded_tags: Vec<String>,
    /// Create the shipped blueprints and the integration record when they are missing (never
    /// overwriting), as the peer's `initializePortResources` does. The peer's default: on.
    pub initialize_port_resources: bool,
    /// Self-service actions: executing them, reporting their pipelines' outcome.
    pub actions: ActionSettings,
}

pub const DEFAULT_INTEGRATION_IDENTIFIER: &str = "ado-sync";

impl Settings {
    /// The settings of the resolved environment (aliases applied, secrets fetched).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env.get(k))
    }

    /// Reads settings through `get` (canonical names; a map in tests), section by section. Every problem
    /// of every section is reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = Lookup::new(&get);
        let mut problems = Problems::default();
        let ado = problems.take(AdoSettings::parse(get));
        let catalog = problems.take(CatalogTarget::parse(get));
        let mapping = problems.take(MappingSettings::parse(get));
        let integration_identifier = problems.take(IntegrationIdentifier::parse(get));
        let initialize_port_resources = problems.take(get.bool("INITIALIZE_PORT_RESOURCES", true));
        let excluded_tags = excluded_tags(get);
        let actions = problems.take(ActionSettings::parse(get));
        problems.check()?;
        let (
            Some(ado),
            Some(catalog),
            Some(mapping),
            Some(IntegrationIdentifier(integration_identifier)),
            Some(initialize_port_resources),
            Some(actions),
        ) = (
            ado,
            catalog,
            mapping,
            integration_identifier,
            initialize_port_resources,
            actions,
        )
        else {
            unreachable!("a section without a value reported a problem above")
        };
        Ok(Self {
            ado,
            catalog,
            integration_identifier,
            mapping,
            excluded_tags,
            initialize_port_resources,
            actions,
        })
    }
}

/// `INTEGRATION_IDENTIFIER` ([`DEFAULT_INTEGRATION_IDENTIFIER`] when unset), read by the resync and the
/// subscriptions with the same rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationIdentifier(pub String);

impl IntegrationIdentifier {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(Lookup::new(&get))
    }

    pub(crate) fn parse(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let id = get
            .get("INTEGRATION_IDENTIFIER")
            .unwrap_or_else(|| DEFAULT_INTEGRATION_IDENTIFIER.to_owned());
        if id.contains('/') {
            return Err(ConfigError::Invalid {
                name: "INTEGRATION_IDENTIFIER",
                reason: "must not contain '/'".into(),
            });
        }
        Ok(Self(id))
    }
}
/// `true`/`false` (also `1`/`0`, `yes`/`no`), `default` when unset.
pub fn parse_bool(
    name: &'static str,
    v: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match v.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name,
            reason: format!("{other:?} is not true or false"),
        }),
    }
}

pub(crate) fn parse_num(
    name: &'static str,
    v: &str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("{v:?} is not a whole number from {min} to {max}"),
        }),
    }
}

/// A JSON array of strings, or a comma-separated list.
fn parse_list(v: &str) -> Vec<String> {
    if let Ok(list) = serde_json::from_str::<Vec<String>>(v) {
        return list;
    }
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `Name: value` per line, as Azure DevOps' own service-hook header input takes them.
pub(crate) fn parse_headers(v: &str) -> Result<Vec<(String, SecretString)>, ConfigError> {
    v.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or_else(|| ConfigError::Invalid {
                name: "ADO_EXTRA_HEADERS",
                reason: "each line must be `Name: value`".into(),
            })?;
            Ok((
                name.trim().to_owned(),
                SecretString::from(value.trim().to_owned()),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("ADO_ORG_URL", "https://dev.azure.com/contoso"),
        ("ADO_PAT", "pat-value"),
        ("CATALOG_DB", "/tmp/x.db"),
    ];

    #[test]
    fn a_missing_setting_is_named() {
        let e = settings(&[("ADO_PAT", "x"), ("CATALOG_DB", "y")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ADO_ORG_URL"), "{e}");
        let e = settings(&[
            ("ADO_ORG_URL", "https://dev.azure.com/c"),
            ("CATALOG_DB", "y"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("ADO_PAT"), "{e}");
        let e = settings(&[("ADO_ORG_URL", "https://dev.azure.com/c"), ("ADO_PAT", "p")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CATALOG_BASE_URL"), "{e}");
        let e = settings(&[
            ("ADO_ORG_URL", "https://dev.azure.com/c"),
            ("ADO_PAT", "p"),
            ("CATALOG_BASE_URL", "eu"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("CATALOG_CLIENT_ID"), "{e}");
    }

    #[test]
    fn defaults_apply_and_secrets_do_not_print() {
        let s = settings(BASE).unwrap();
        assert_eq!(s.ado.api_version, None, "the client picks it by product");
        assert_eq!(s.integration_identifier, "ado-sync");
        assert!(!s.mapping.allow_env);
        assert!(matches!(s.catalog, CatalogTarget::Embedded { .. }));
        assert!(!format!("{s:?}").contains("pat-value"));
    }

    #[test]
    fn the_api_version_is_kept_as_set_and_the_org_url_must_be_http_with_a_host() {
        let mut vars = BASE.to_vec();
        vars.push(("ADO_API_VERSION", "6.0"));
        assert_eq!(
            settings(&vars).unwrap().ado.api_version.as_deref(),
            Some("6.0")
        );
        vars.push(("ADO_API_VERSION", "latest"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("ADO_API_VERSION"), "{e}");
        for bad in ["dev.azure.com/contoso", "ftp://dev.azure.com/contoso"] {
            let e = settings(&[("ADO_ORG_URL", bad), ("ADO_PAT", "p"), ("CATALOG_DB", "x")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("ADO_ORG_URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn catalog_region_shortcuts_and_lists_and_headers_parse() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("CATALOG_BASE_URL", "us"),
            ("CATALOG_CLIENT_ID", "id"),
            ("CATALOG_CLIENT_SECRET", "shh"),
            ("ADO_EXCLUDED_TAGS", "archived, legacy"),
            ("ADO_EXTRA_HEADERS", "X-Proxy-Key: abc\nX-Other: d:e"),
        ]);
        let s = settings(&vars).unwrap();
        match &s.catalog {
            CatalogTarget::Port {
                base_url,
                client_id,
                ..
            } => {
                assert_eq!(base_url.as_str(), "https://api.us.getport.io/");
                assert_eq!(client_id, "id");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.excluded_tags, vec!["archived", "legacy"]);
        assert_eq!(s.ado.extra_headers.len(), 2);
        assert_eq!(s.ado.extra_headers[1].0, "X-Other");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("shh") && !dbg.contains("abc"), "{dbg}");
    }

    #[test]
    fn the_catalog_clients_timeout_and_retries_default_to_oceans_and_can_be_set() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("CATALOG_BASE_URL", "eu"),
            ("CATALOG_CLIENT_ID", "id"),
            ("CATALOG_CLIENT_SECRET", "shh"),
        ]);
        let limits = |vars: &[(&str, &str)]| match settings(vars).unwrap().catalog {
            CatalogTarget::Port {
                timeout,
                max_retries,
                ..
            } => (timeout, max_retries),
            other => panic!("{other:?}"),
        };
        assert_eq!(limits(&vars), (Duration::from_secs(60), 5));
        vars.extend([("CATALOG_TIMEOUT_SECS", "5"), ("CATALOG_MAX_RETRIES", "0")]);
        assert_eq!(limits(&vars), (Duration::from_secs(5), 0));
        vars.push(("CATALOG_TIMEOUT_SECS", "0"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("CATALOG_TIMEOUT_SECS"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = settings(&[
            ("ADO_MAX_CONCURRENCY", "lots"),
            ("MAPPING_ALLOW_ENV", "perhaps"),
            ("CATALOG_BASE_URL", "eu"),
            ("CATALOG_CLIENT_SECRET", "shh"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "ADO_ORG_URL",
            "ADO_PAT",
            "ADO_MAX_CONCURRENCY",
            "MAPPING_ALLOW_ENV",
            "CATALOG_CLIENT_ID",
        ] {
            assert!(e.contains(name), "{name}: {e}");
        }
        assert!(e.starts_with("5 configuration problems"), "{e}");
        assert!(!e.contains("shh"), "{e}");
    }

    #[test]
    fn mapping_sources_and_initialization_parse() {
        let s = settings(BASE).unwrap();
        assert!(matches!(s.mapping.source, MappingSetting::Default));
        assert!(s.initialize_port_resources);
        let mut vars = BASE.to_vec();
        vars.extend([
            ("MAPPING", "resources: []"),
            ("INITIALIZE_PORT_RESOURCES", "false"),
        ]);
        let s = settings(&vars).unwrap();
        assert!(matches!(s.mapping.source, MappingSetting::Inline(_)));
        assert!(!s.initialize_port_resources);
        vars.push(("MAPPING_FILE", "m.yaml"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("MAPPING"), "{e}");
    }

    #[test]
    fn a_problem_two_sections_report_is_listed_once() {
        let vars = [
            ("INTEGRATION_IDENTIFIER", "a/b"),
            ("MAPPING_ALLOW_ENV", "maybe"),
        ];
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        let get = |k: &str| map.get(k).map(|v| v.to_string());
        // As the resync function reads them: the resync's settings and the subscriptions'.
        let e = ConfigError::check(vec![
            IntegrationIdentifier::from_lookup(get).unwrap_err(),
            MappingSettings::from_lookup(get).unwrap_err(),
            IntegrationIdentifier::from_lookup(get).unwrap_err(),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("2 configuration problems"), "{e}");
        assert_eq!(e.matches("INTEGRATION_IDENTIFIER").count(), 1, "{e}");
    }

    #[test]
    fn malformed_numbers_are_rejected_with_the_name() {
        let mut vars = BASE.to_vec();
        vars.push(("ADO_MAX_CONCURRENCY", "lots"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("ADO_MAX_CONCURRENCY"), "{e}");
    }
}
