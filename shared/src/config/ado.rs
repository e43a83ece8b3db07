//! The `ADO_*` section: where the organisation is, the token, and the client's limits. Plain values;
//! the Azure DevOps client builds itself from them (`AdoClientConfig::from_settings`), applying its
//! defaults where a setting is unset.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Lookup, Problems, parse_headers};

/// The `ADO_*` settings. `None` is "unset: the client's default".
#[derive(Clone)]
pub struct AdoSettings {
    /// `ADO_ORG_URL`: an http(s) URL with a host. Its Azure DevOps form (organisation or collection) is
    /// checked when the client is built.
    pub org_url: Url,
    pub pat: SecretString,
    /// `ADO_API_VERSION`; unset: 7.1 on Services, 7.0 on Server.
    pub api_version: Option<String>,
    pub max_concurrency: Option<usize>,
    pub timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    /// `ADO_EXTRA_HEADERS`: values may be secrets.
    pub extra_headers: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for AdoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoSettings")
            .field("org_url", &self.org_url.as_str())
            .field("pat", &"[redacted]")
            .field("api_version", &self.api_version)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field(
                "extra_headers",
                &self
                    .extra_headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AdoSettings {
    /// The section alone, every problem of it reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(Lookup::new(&get))
    }

    pub(crate) fn parse(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let org_url = match get.get("ADO_ORG_URL") {
            None => {
                problems.push(ConfigError::Missing {
                    name: "ADO_ORG_URL",
                    hint: "the organisation URL, e.g. https://dev.azure.com/contoso",
                });
                None
            }
            Some(raw) => problems.take(org_url(&raw)),
        };
        let pat = get.get("ADO_PAT");
        if pat.is_none() {
            problems.push(ConfigError::Missing {
                name: "ADO_PAT",
                hint: "a personal access token with read scopes (or ADO_PAT_SECRET_ARN / ADO_PAT_SSM_PARAMETER)",
            });
        }
        let api_version = get.get("ADO_API_VERSION");
        if let Some(v) = &api_version
            && !v.chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            problems.push(ConfigError::Invalid {
                name: "ADO_API_VERSION",
                reason: format!("{v:?} is not a version like 7.1"),
            });
        }
        let max_concurrency = problems
            .take(get.num("ADO_MAX_CONCURRENCY", 1, 200))
            .flatten();
        let timeout = problems.take(get.num("ADO_TIMEOUT_SECS", 1, 900)).flatten();
        let max_retries = problems.take(get.num("ADO_MAX_RETRIES", 0, 20)).flatten();
        let extra_headers = get
            .get("ADO_EXTRA_HEADERS")
            .and_then(|h| problems.take(parse_headers(&h)))
            .unwrap_or_default();
        problems.check()?;
        let (Some(org_url), Some(pat)) = (org_url, pat) else {
            unreachable!("a missing setting is a problem reported above")
        };
        Ok(Self {
            org_url,
            pat: SecretString::from(pat),
            api_version,
            max_concurrency: max_concurrency.map(|n| n as usize),
            timeout: timeout.map(Duration::from_secs),
            max_retries: max_retries.map(|n| n as u32),
            extra_headers,
        })
    }
}

fn org_url(raw: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "ADO_ORG_URL",
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "{raw:?} must be an https:// URL with a host (or http:// for a local server)"
        )));
    }
    Ok(url)
}
