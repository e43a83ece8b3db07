//! The `CATALOG_*` section: the Port API (or a compatible server) with its credentials and limits, or
//! the embedded catalog's file. The catalog adapters build themselves from it.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Lookup, Problems};

/// Port's EU API (the default, and `CATALOG_BASE_URL=eu`).
pub const PORT_EU_BASE_URL: &str = "https://api.getport.io";
/// Port's US API (`CATALOG_BASE_URL=us`).
pub const PORT_US_BASE_URL: &str = "https://api.us.getport.io";

/// Where entities go.
#[derive(Debug, Clone)]
pub enum CatalogTarget {
    /// The Port API (or a compatible server).
    Port {
        base_url: url::Url,
        client_id: String,
        client_secret: SecretString,
        /// Per request, reading the answer included (`CATALOG_TIMEOUT_SECS`, default 60 s as Ocean).
        timeout: Duration,
        /// Retries of a throttled, timed-out or dropped call (`CATALOG_MAX_RETRIES`, default 5).
        max_retries: u32,
    },
    /// The embedded SQLite catalog at this path.
    Embedded { path: PathBuf },
}

impl CatalogTarget {
    /// The section alone, every problem of it reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(Lookup::new(&get))
    }

    pub(crate) fn parse(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let timeout = problems
            .take(get.num("CATALOG_TIMEOUT_SECS", 1, 900))
            .flatten();
        let max_retries = problems
            .take(get.num("CATALOG_MAX_RETRIES", 0, 20))
            .flatten();
        let target = match (get.get("CATALOG_BASE_URL"), get.get("CATALOG_DB")) {
            (Some(base), _) => {
                let base = match base.trim().to_ascii_lowercase().as_str() {
                    "eu" => PORT_EU_BASE_URL.to_owned(),
                    "us" => PORT_US_BASE_URL.to_owned(),
                    _ => base,
                };
                let base_url =
                    problems.take(url::Url::parse(&base).map_err(|e| ConfigError::Invalid {
                        name: "CATALOG_BASE_URL",
                        reason: format!("{base:?} is not a URL: {e}"),
                    }));
                let client_id = get.get("CATALOG_CLIENT_ID");
                if client_id.is_none() {
                    problems.push(ConfigError::Missing {
                        name: "CATALOG_CLIENT_ID",
                        hint: "the catalog API client id",
                    });
                }
                let client_secret = get.get("CATALOG_CLIENT_SECRET");
                if client_secret.is_none() {
                    problems.push(ConfigError::Missing {
                        name: "CATALOG_CLIENT_SECRET",
                        hint: "the catalog API client secret",
                    });
                }
                match (base_url, client_id, client_secret) {
                    (Some(base_url), Some(client_id), Some(client_secret)) => {
                        Some(CatalogTarget::Port {
                            base_url,
                            client_id,
                            client_secret: SecretString::from(client_secret),
                            timeout: Duration::from_secs(timeout.unwrap_or(60)),
                            max_retries: max_retries.unwrap_or(5) as u32,
                        })
                    }
                    _ => None,
                }
            }
            (None, Some(path)) => Some(CatalogTarget::Embedded {
                path: PathBuf::from(path),
            }),
            (None, None) => {
                problems.push(ConfigError::Missing {
                    name: "CATALOG_BASE_URL",
                    hint: "the catalog API URL (eu, us, or a URL) with CATALOG_CLIENT_ID and CATALOG_CLIENT_SECRET; or CATALOG_DB for the embedded catalog",
                });
                None
            }
        };
        problems.check()?;
        Ok(target.expect("a missing catalog is a problem reported above"))
    }
}
