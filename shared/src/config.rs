//! Typed settings, read once from the environment; secrets never print. Every setting has one canonical
//! name (documented in the README); a missing or malformed one fails at start with its name.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::ado::{AdoClientConfig, OrgUrl};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing setting {name}: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where entities go.
#[derive(Debug, Clone)]
pub enum CatalogTarget {
    /// The Port API (or a compatible server).
    Port {
        base_url: url::Url,
        client_id: String,
        client_secret: SecretString,
    },
    /// The embedded SQLite catalog at this path.
    Embedded { path: PathBuf },
}

/// Everything a resync needs. Built once at cold start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ado: AdoClientConfig,
    pub catalog: CatalogTarget,
    /// Ties this integration's entities together (`$datasource` suffix); use the peer's identifier to take
    /// over the entities it created.
    pub integration_identifier: String,
    pub mapping_file: Option<PathBuf>,
    /// Lets jq mappings read the process environment (`env`, `$ENV`). Off: a mapping must not be able to
    /// read the PAT or the catalog secret out of the function's environment.
    pub mapping_allow_env: bool,
    /// Projects carrying any of these tags are skipped by every kind.
    pub excluded_tags: Vec<String>,
}

pub const DEFAULT_INTEGRATION_IDENTIFIER: &str = "ado-sync";

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let org = get("ADO_ORG_URL").ok_or(ConfigError::Missing {
            name: "ADO_ORG_URL",
            hint: "the organisation URL, e.g. https://dev.azure.com/contoso",
        })?;
        let org_url = OrgUrl::parse(&org).map_err(|e| ConfigError::Invalid {
            name: "ADO_ORG_URL",
            reason: e.to_string(),
        })?;
        let pat = get("ADO_PAT").ok_or(ConfigError::Missing {
            name: "ADO_PAT",
            hint: "a personal access token with read scopes",
        })?;
        let mut ado = AdoClientConfig::new(org_url, SecretString::from(pat));
        // Azure DevOps Server 2022 serves 7.0 at most; Services serves 7.1.
        ado.api_version = match get("ADO_API_VERSION") {
            Some(v) => {
                if !v.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(ConfigError::Invalid {
                        name: "ADO_API_VERSION",
                        reason: format!("{v:?} is not a version like 7.1"),
                    });
                }
                v
            }
            None if ado.org_url.is_cloud() => "7.1".into(),
            None => "7.0".into(),
        };
        if let Some(n) = get("ADO_MAX_CONCURRENCY") {
            ado.max_concurrency = parse_num("ADO_MAX_CONCURRENCY", &n, 1, 200)? as usize;
        }
        if let Some(n) = get("ADO_TIMEOUT_SECS") {
            ado.timeout = Duration::from_secs(parse_num("ADO_TIMEOUT_SECS", &n, 1, 900)?);
        }
        if let Some(n) = get("ADO_MAX_RETRIES") {
            ado.max_retries = parse_num("ADO_MAX_RETRIES", &n, 0, 20)? as u32;
        }
        if let Some(headers) = get("ADO_EXTRA_HEADERS") {
            ado.extra_headers = parse_headers(&headers)?;
        }

        let catalog = match (get("CATALOG_BASE_URL"), get("CATALOG_DB")) {
            (Some(base), _) => {
                let base = match base.to_ascii_lowercase().as_str() {
                    "eu" => crate::catalog::port::PORT_EU_BASE_URL.to_owned(),
                    "us" => crate::catalog::port::PORT_US_BASE_URL.to_owned(),
                    _ => base,
                };
                let base_url = url::Url::parse(&base).map_err(|e| ConfigError::Invalid {
                    name: "CATALOG_BASE_URL",
                    reason: format!("{base:?} is not a URL: {e}"),
                })?;
                let client_id = get("CATALOG_CLIENT_ID").ok_or(ConfigError::Missing {
                    name: "CATALOG_CLIENT_ID",
                    hint: "the catalog API client id",
                })?;
                let client_secret = get("CATALOG_CLIENT_SECRET").ok_or(ConfigError::Missing {
                    name: "CATALOG_CLIENT_SECRET",
                    hint: "the catalog API client secret",
                })?;
                CatalogTarget::Port {
                    base_url,
                    client_id,
                    client_secret: SecretString::from(client_secret),
                }
            }
            (None, Some(path)) => CatalogTarget::Embedded {
                path: PathBuf::from(path),
            },
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "CATALOG_BASE_URL",
                    hint: "the catalog API URL (eu, us, or a URL) with CATALOG_CLIENT_ID and CATALOG_CLIENT_SECRET; or CATALOG_DB for the embedded catalog",
                });
            }
        };

        let integration_identifier = get("INTEGRATION_IDENTIFIER")
            .unwrap_or_else(|| DEFAULT_INTEGRATION_IDENTIFIER.to_owned());
        if integration_identifier.contains('/') {
            return Err(ConfigError::Invalid {
                name: "INTEGRATION_IDENTIFIER",
                reason: "must not contain '/'".into(),
            });
        }
        let mapping_allow_env = match get("MAPPING_ALLOW_ENV")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "MAPPING_ALLOW_ENV",
                    reason: format!("{other:?} is not true or false"),
                });
            }
        };
        Ok(Self {
            ado,
            catalog,
            integration_identifier,
            mapping_file: get("MAPPING_FILE").map(PathBuf::from),
            mapping_allow_env,
            excluded_tags: get("ADO_EXCLUDED_TAGS")
                .map(|t| parse_list(&t))
                .unwrap_or_default(),
        })
    }
}

fn parse_num(name: &'static str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
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
fn parse_headers(v: &str) -> Result<Vec<(String, SecretString)>, ConfigError> {
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
        assert_eq!(s.ado.api_version, "7.1");
        assert_eq!(s.integration_identifier, "ado-sync");
        assert!(!s.mapping_allow_env);
        assert!(matches!(s.catalog, CatalogTarget::Embedded { .. }));
        assert!(!format!("{s:?}").contains("pat-value"));
    }

    #[test]
    fn server_urls_default_to_api_version_7_0() {
        let s = settings(&[
            ("ADO_ORG_URL", "https://tfs.local/tfs/Col"),
            ("ADO_PAT", "p"),
            ("CATALOG_DB", "x"),
        ])
        .unwrap();
        assert_eq!(s.ado.api_version, "7.0");
        let s = settings(&[
            ("ADO_ORG_URL", "https://tfs.local/tfs/Col"),
            ("ADO_PAT", "p"),
            ("CATALOG_DB", "x"),
            ("ADO_API_VERSION", "6.0"),
        ])
        .unwrap();
        assert_eq!(s.ado.api_version, "6.0");
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
    fn malformed_numbers_are_rejected_with_the_name() {
        let mut vars = BASE.to_vec();
        vars.push(("ADO_MAX_CONCURRENCY", "lots"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("ADO_MAX_CONCURRENCY"), "{e}");
    }
}
