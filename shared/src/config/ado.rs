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
    /// `ADO_PAT`, or a service principal (`ADO_CLIENT_ID`, `ADO_CLIENT_SECRET`, `ADO_TENANT_ID`).
    pub credential: AdoCredential,
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
            .field("credential", &self.credential)
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
        let credential = problems.take(credential(get));
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
        let (Some(org_url), Some(credential)) = (org_url, credential) else {
            unreachable!("a missing setting is a problem reported above")
        };
        Ok(Self {
            org_url,
            credential,
            api_version,
            max_concurrency: max_concurrency.map(|n| n as usize),
            timeout: timeout.map(Duration::from_secs),
            max_retries: max_retries.map(|n| n as u32),
            extra_headers,
        })
    }
}

/// How the client signs in to Azure DevOps.
#[derive(Clone)]
pub enum AdoCredential {
    /// A personal access token (HTTP Basic).
    Pat(SecretString),
    /// A Microsoft Entra ID service principal (client credentials, Bearer tokens).
    ServicePrincipal(ServicePrincipal),
}

impl std::fmt::Debug for AdoCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdoCredential::Pat(_) => f.write_str("Pat([redacted])"),
            AdoCredential::ServicePrincipal(p) => p.fmt(f),
        }
    }
}

/// A service principal's client credentials.
#[derive(Clone)]
pub struct ServicePrincipal {
    /// The Entra ID tenant (directory) id or domain.
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// `ADO_AUTHORITY_URL`: `https://login.microsoftonline.com` unless set (sovereign clouds, tests).
    pub authority: Url,
}

impl std::fmt::Debug for ServicePrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePrincipal")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("authority", &self.authority.as_str())
            .finish()
    }
}

const PRINCIPAL: [&str; 3] = ["ADO_CLIENT_ID", "ADO_CLIENT_SECRET", "ADO_TENANT_ID"];

/// `ADO_PAT`, or all three service-principal settings (never both: which one signs in must be plain).
fn credential(get: Lookup<'_>) -> Result<AdoCredential, ConfigError> {
    let pat = get.get("ADO_PAT");
    let given: Vec<&str> = PRINCIPAL
        .into_iter()
        .filter(|n| get.get(n).is_some())
        .collect();
    match (pat, given.is_empty()) {
        (Some(pat), true) => Ok(AdoCredential::Pat(SecretString::from(pat))),
        (None, true) => Err(ConfigError::Missing {
            name: "ADO_PAT",
            hint: "a personal access token with read scopes (or ADO_PAT_SECRET_ARN / ADO_PAT_SSM_PARAMETER), \
                   or a service principal: ADO_CLIENT_ID, ADO_CLIENT_SECRET and ADO_TENANT_ID",
        }),
        (Some(_), false) => Err(ConfigError::Invalid {
            name: "ADO_PAT",
            reason: format!(
                "set either ADO_PAT or the service principal ({}), not both",
                given.join(", ")
            ),
        }),
        (None, false) => {
            let mut problems = Problems::default();
            for name in PRINCIPAL.into_iter().filter(|n| !given.contains(n)) {
                problems.push(ConfigError::Missing {
                    name,
                    hint: "a service principal needs ADO_CLIENT_ID, ADO_CLIENT_SECRET and ADO_TENANT_ID",
                });
            }
            let authority = match get.get("ADO_AUTHORITY_URL") {
                None => Url::parse(DEFAULT_AUTHORITY).ok(),
                Some(raw) => problems.take(
                    Url::parse(raw.trim())
                        .ok()
                        .filter(|u| {
                            matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                        })
                        .ok_or_else(|| ConfigError::Invalid {
                            name: "ADO_AUTHORITY_URL",
                            reason: format!("{raw:?} is not an http(s) URL"),
                        }),
                ),
            };
            let tenant_id = get.get("ADO_TENANT_ID").unwrap_or_default();
            if !tenant_id.is_empty()
                && !tenant_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
            {
                problems.push(ConfigError::Invalid {
                    name: "ADO_TENANT_ID",
                    reason: "a directory id (GUID) or domain".into(),
                });
            }
            problems.check()?;
            Ok(AdoCredential::ServicePrincipal(ServicePrincipal {
                tenant_id: tenant_id.trim().to_owned(),
                client_id: get
                    .get("ADO_CLIENT_ID")
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                client_secret: SecretString::from(get.get("ADO_CLIENT_SECRET").unwrap_or_default()),
                authority: authority.expect("an invalid authority is a problem reported above"),
            }))
        }
    }
}

/// The public cloud's Entra ID authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<AdoSettings, ConfigError> {
        let mut all = vec![("ADO_ORG_URL", "https://dev.azure.com/contoso")];
        all.extend_from_slice(pairs);
        AdoSettings::from_lookup(|k| {
            all.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn a_pat_or_a_whole_service_principal_signs_in() {
        let pat = parse(&[("ADO_PAT", "p")]).unwrap();
        assert!(matches!(pat.credential, AdoCredential::Pat(_)));
        let sp = parse(&[
            ("ADO_CLIENT_ID", "app"),
            ("ADO_CLIENT_SECRET", "very-secret-value"),
            ("ADO_TENANT_ID", "contoso.onmicrosoft.com"),
        ])
        .unwrap();
        let AdoCredential::ServicePrincipal(p) = &sp.credential else {
            panic!("{:?}", sp.credential)
        };
        assert_eq!(p.authority.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(p.client_id, "app");
        assert!(!format!("{sp:?}").contains("very-secret-value"));
    }

    #[test]
    fn both_none_or_half_a_principal_are_refused_by_name() {
        let both = parse(&[("ADO_PAT", "p"), ("ADO_CLIENT_ID", "app")])
            .unwrap_err()
            .to_string();
        assert!(both.contains("not both"), "{both}");
        let none = parse(&[]).unwrap_err().to_string();
        assert!(
            none.contains("ADO_PAT") && none.contains("ADO_CLIENT_ID"),
            "{none}"
        );
        let half = parse(&[("ADO_CLIENT_ID", "app"), ("ADO_AUTHORITY_URL", "ftp://x")])
            .unwrap_err()
            .to_string();
        for name in ["ADO_CLIENT_SECRET", "ADO_TENANT_ID", "ADO_AUTHORITY_URL"] {
            assert!(half.contains(name), "{half}");
        }
        let bad_tenant = parse(&[
            ("ADO_CLIENT_ID", "app"),
            ("ADO_CLIENT_SECRET", "s"),
            ("ADO_TENANT_ID", "../x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(bad_tenant.contains("ADO_TENANT_ID"), "{bad_tenant}");
    }
}
