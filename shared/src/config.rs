//! Typed settings, read once at cold start from the resolved environment ([`Env`]: canonical names, the
//! peer's names as aliases, secrets from Secrets Manager or SSM); secrets never print. Every setting has
//! one canonical name ([`names::SETTINGS`], documented in the README); missing or malformed ones fail at
//! start, all together, each with its name.

mod env;
pub mod names;
pub mod secrets;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::ado::{AdoClientConfig, OrgUrl};

pub use env::Env;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing setting {name}: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A secret setting whose source (`variable`) could not be read.
    #[error("cannot read setting {name} from {variable}: {reason}")]
    Secret {
        name: &'static str,
        variable: String,
        reason: String,
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
        // Nested lists flatten so the message stays one list.
        let mut problems: Vec<ConfigError> =
            problems.into_iter().flat_map(Self::into_list).collect();
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

/// Everything a resync needs. Built once at cold start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ado: AdoClientConfig,
    pub catalog: CatalogTarget,
    /// Ties this integration's entities together (`$datasource` suffix); use the peer's identifier to take
    /// over the entities it created.
    pub integration_identifier: String,
    pub mapping: MappingSetting,
    /// Lets jq mappings read the process environment (`env`, `$ENV`). Off: a mapping must not be able to
    /// read the PAT or the catalog secret out of the function's environment.
    pub mapping_allow_env: bool,
    /// Projects carrying any of these tags are skipped by every kind.
    pub excluded_tags: Vec<String>,
    /// Create the shipped blueprints and the integration record when they are missing (never
    /// overwriting), as the peer's `initializePortResources` does. The peer's default: on.
    pub initialize_port_resources: bool,
}

pub const DEFAULT_INTEGRATION_IDENTIFIER: &str = "ado-sync";

impl Settings {
    /// The settings of the resolved environment (aliases applied, secrets fetched).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env.get(k))
    }

    /// Reads settings through `get` (canonical names; a map in tests). Every problem is reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let mut ok = |r: Result<(), ConfigError>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };

        let org_url = match get("ADO_ORG_URL") {
            None => {
                ok(Err(ConfigError::Missing {
                    name: "ADO_ORG_URL",
                    hint: "the organisation URL, e.g. https://dev.azure.com/contoso",
                }));
                None
            }
            Some(org) => match OrgUrl::parse(&org) {
                Ok(u) => Some(u),
                Err(e) => {
                    ok(Err(ConfigError::Invalid {
                        name: "ADO_ORG_URL",
                        reason: e.to_string(),
                    }));
                    None
                }
            },
        };
        let pat = get("ADO_PAT");
        if pat.is_none() {
            ok(Err(ConfigError::Missing {
                name: "ADO_PAT",
                hint: "a personal access token with read scopes (or ADO_PAT_SECRET_ARN / ADO_PAT_SSM_PARAMETER)",
            }));
        }
        let api_version = get("ADO_API_VERSION");
        if let Some(v) = &api_version
            && !v.chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            ok(Err(ConfigError::Invalid {
                name: "ADO_API_VERSION",
                reason: format!("{v:?} is not a version like 7.1"),
            }));
        }
        let num = |name: &'static str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
            get(name).map(|v| parse_num(name, &v, min, max)).transpose()
        };
        let max_concurrency = num("ADO_MAX_CONCURRENCY", 1, 200).unwrap_or_else(|e| {
            ok(Err(e));
            None
        });
        let timeout = num("ADO_TIMEOUT_SECS", 1, 900).unwrap_or_else(|e| {
            ok(Err(e));
            None
        });
        let max_retries = num("ADO_MAX_RETRIES", 0, 20).unwrap_or_else(|e| {
            ok(Err(e));
            None
        });
        let catalog_timeout = num("CATALOG_TIMEOUT_SECS", 1, 900).unwrap_or_else(|e| {
            ok(Err(e));
            None
        });
        let catalog_retries = num("CATALOG_MAX_RETRIES", 0, 20).unwrap_or_else(|e| {
            ok(Err(e));
            None
        });
        let extra_headers = match get("ADO_EXTRA_HEADERS").map(|h| parse_headers(&h)) {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                ok(Err(e));
                Vec::new()
            }
            None => Vec::new(),
        };

        let catalog = match (get("CATALOG_BASE_URL"), get("CATALOG_DB")) {
            (Some(base), _) => {
                let base = match base.trim().to_ascii_lowercase().as_str() {
                    "eu" => crate::catalog::port::PORT_EU_BASE_URL.to_owned(),
                    "us" => crate::catalog::port::PORT_US_BASE_URL.to_owned(),
                    _ => base,
                };
                let base_url = url::Url::parse(&base)
                    .map_err(|e| ConfigError::Invalid {
                        name: "CATALOG_BASE_URL",
                        reason: format!("{base:?} is not a URL: {e}"),
                    })
                    .map_err(|e| ok(Err(e)))
                    .ok();
                let client_id = get("CATALOG_CLIENT_ID");
                if client_id.is_none() {
                    ok(Err(ConfigError::Missing {
                        name: "CATALOG_CLIENT_ID",
                        hint: "the catalog API client id",
                    }));
                }
                let client_secret = get("CATALOG_CLIENT_SECRET");
                if client_secret.is_none() {
                    ok(Err(ConfigError::Missing {
                        name: "CATALOG_CLIENT_SECRET",
                        hint: "the catalog API client secret",
                    }));
                }
                match (base_url, client_id, client_secret) {
                    (Some(base_url), Some(client_id), Some(client_secret)) => {
                        Some(CatalogTarget::Port {
                            base_url,
                            client_id,
                            client_secret: SecretString::from(client_secret),
                            timeout: Duration::from_secs(catalog_timeout.unwrap_or(60)),
                            max_retries: catalog_retries.unwrap_or(5) as u32,
                        })
                    }
                    _ => None,
                }
            }
            (None, Some(path)) => Some(CatalogTarget::Embedded {
                path: PathBuf::from(path),
            }),
            (None, None) => {
                ok(Err(ConfigError::Missing {
                    name: "CATALOG_BASE_URL",
                    hint: "the catalog API URL (eu, us, or a URL) with CATALOG_CLIENT_ID and CATALOG_CLIENT_SECRET; or CATALOG_DB for the embedded catalog",
                }));
                None
            }
        };

        let integration_identifier = get("INTEGRATION_IDENTIFIER")
            .unwrap_or_else(|| DEFAULT_INTEGRATION_IDENTIFIER.to_owned());
        if integration_identifier.contains('/') {
            ok(Err(ConfigError::Invalid {
                name: "INTEGRATION_IDENTIFIER",
                reason: "must not contain '/'".into(),
            }));
        }
        let mapping = match (get("MAPPING_FILE"), get("MAPPING")) {
            (Some(_), Some(_)) => {
                ok(Err(ConfigError::Invalid {
                    name: "MAPPING",
                    reason: "set MAPPING_FILE or MAPPING, not both".into(),
                }));
                MappingSetting::Default
            }
            (Some(path), None) => MappingSetting::File(PathBuf::from(path)),
            (None, Some(text)) => MappingSetting::Inline(text),
            (None, None) => MappingSetting::Default,
        };
        let mapping_allow_env = parse_bool("MAPPING_ALLOW_ENV", get("MAPPING_ALLOW_ENV"), false)
            .unwrap_or_else(|e| {
                ok(Err(e));
                false
            });
        let initialize_port_resources = parse_bool(
            "INITIALIZE_PORT_RESOURCES",
            get("INITIALIZE_PORT_RESOURCES"),
            true,
        )
        .unwrap_or_else(|e| {
            ok(Err(e));
            true
        });
        let excluded_tags = get("ADO_EXCLUDED_TAGS")
            .map(|t| parse_list(&t))
            .unwrap_or_default();

        ConfigError::check(problems)?;
        let (Some(org_url), Some(pat), Some(catalog)) = (org_url, pat, catalog) else {
            unreachable!("a missing required setting is a problem reported above")
        };
        let mut ado = AdoClientConfig::new(org_url, SecretString::from(pat));
        // Azure DevOps Server 2022 serves 7.0 at most; Services serves 7.1.
        ado.api_version = match api_version {
            Some(v) => v,
            None if ado.org_url.is_cloud() => "7.1".into(),
            None => "7.0".into(),
        };
        if let Some(n) = max_concurrency {
            ado.max_concurrency = n as usize;
        }
        if let Some(n) = timeout {
            ado.timeout = Duration::from_secs(n);
        }
        if let Some(n) = max_retries {
            ado.max_retries = n as u32;
        }
        ado.extra_headers = extra_headers;
        Ok(Self {
            ado,
            catalog,
            integration_identifier,
            mapping,
            mapping_allow_env,
            excluded_tags,
            initialize_port_resources,
        })
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
        assert!(matches!(s.mapping, MappingSetting::Default));
        assert!(s.initialize_port_resources);
        let mut vars = BASE.to_vec();
        vars.extend([
            ("MAPPING", "resources: []"),
            ("INITIALIZE_PORT_RESOURCES", "false"),
        ]);
        let s = settings(&vars).unwrap();
        assert!(matches!(s.mapping, MappingSetting::Inline(_)));
        assert!(!s.initialize_port_resources);
        vars.push(("MAPPING_FILE", "m.yaml"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("MAPPING"), "{e}");
    }

    #[test]
    fn malformed_numbers_are_rejected_with_the_name() {
        let mut vars = BASE.to_vec();
        vars.push(("ADO_MAX_CONCURRENCY", "lots"));
        let e = settings(&vars).unwrap_err().to_string();
        assert!(e.contains("ADO_MAX_CONCURRENCY"), "{e}");
    }
}
