//! The webhook credentials, parsed once for both sides: the webhook checks them on every delivery, and
//! the service-hook subscriptions send them. One rule, so what is registered is what is accepted.

use secrecy::SecretString;

use super::{ConfigError, Lookup, Problems};

/// The Basic user name when only `WEBHOOK_SECRET` is set: Azure DevOps sends the Basic header only with
/// both parts, and the webhook checks both.
pub const DEFAULT_WEBHOOK_USERNAME: &str = "ado-sync";

/// `WEBHOOK_USERNAME`/`WEBHOOK_SECRET` (Basic) and `WEBHOOK_HEADER_NAME`/`WEBHOOK_HEADER_SECRET` (a
/// custom header). Either, both or neither; whether neither is allowed is the reader's rule.
#[derive(Clone, Default)]
pub struct WebhookCredentials {
    /// Basic user name and password.
    pub basic: Option<(String, SecretString)>,
    /// A custom header's name (as configured, trimmed) and value.
    pub header: Option<(String, SecretString)>,
}

impl std::fmt::Debug for WebhookCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCredentials")
            .field(
                "basic",
                &self.basic.as_ref().map(|(user, _)| (user, "[redacted]")),
            )
            .field(
                "header",
                &self.header.as_ref().map(|(name, _)| (name, "[redacted]")),
            )
            .finish()
    }
}

impl WebhookCredentials {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(Lookup::new(&get))
    }

    /// The rule: a secret alone is enough (the user name defaults to [`DEFAULT_WEBHOOK_USERNAME`]); a
    /// user name alone, or half of the header pair, is a problem; the header name is an HTTP token and
    /// not `Authorization` when Basic is set; no value may break Azure DevOps' `Name:value` lines.
    pub(crate) fn parse(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let basic = match (get.get("WEBHOOK_USERNAME"), get.get("WEBHOOK_SECRET")) {
            (user, Some(secret)) => {
                let user = user.map_or_else(
                    || DEFAULT_WEBHOOK_USERNAME.to_owned(),
                    |u| u.trim().to_owned(),
                );
                if user.contains(':') {
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_USERNAME",
                        reason: "must not contain ':' (Basic auth splits on it)".into(),
                    });
                }
                Some((user, SecretString::from(secret)))
            }
            (Some(_), None) => {
                problems.push(ConfigError::Missing {
                    name: "WEBHOOK_SECRET",
                    hint: "the Basic password the service-hook subscriptions send with WEBHOOK_USERNAME",
                });
                None
            }
            (None, None) => None,
        };
        let header = match (
            get.get("WEBHOOK_HEADER_NAME"),
            get.get("WEBHOOK_HEADER_SECRET"),
        ) {
            (Some(name), Some(value)) => {
                let name = name.trim().to_owned();
                if !name.bytes().all(is_token_byte) {
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_HEADER_NAME",
                        reason: format!("{name:?} is not an HTTP header name"),
                    });
                } else if name.eq_ignore_ascii_case("authorization") && basic.is_some() {
                    // Both checks would read the one Authorization header, and no value passes both.
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_HEADER_NAME",
                        reason: "authorization is taken by WEBHOOK_USERNAME/WEBHOOK_SECRET".into(),
                    });
                }
                if value.contains(['\r', '\n']) {
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_HEADER_SECRET",
                        reason: "must be a single line".into(),
                    });
                }
                Some((name, SecretString::from(value)))
            }
            (None, Some(_)) => {
                problems.push(ConfigError::Missing {
                    name: "WEBHOOK_HEADER_NAME",
                    hint: "the header that carries WEBHOOK_HEADER_SECRET",
                });
                None
            }
            (Some(_), None) => {
                problems.push(ConfigError::Missing {
                    name: "WEBHOOK_HEADER_SECRET",
                    hint: "the value the WEBHOOK_HEADER_NAME header must carry",
                });
                None
            }
            (None, None) => None,
        };
        problems.check()?;
        Ok(Self { basic, header })
    }

    pub fn is_empty(&self) -> bool {
        self.basic.is_none() && self.header.is_none()
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn credentials(vars: &[(&str, &str)]) -> Result<WebhookCredentials, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        WebhookCredentials::from_lookup(|k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn a_secret_alone_is_basic_with_the_default_user_name() {
        let c = credentials(&[("WEBHOOK_SECRET", "pw")]).unwrap();
        let (user, password) = c.basic.unwrap();
        assert_eq!(user, DEFAULT_WEBHOOK_USERNAME);
        assert_eq!(password.expose_secret(), "pw");
        assert!(c.header.is_none());
    }

    #[test]
    fn every_problem_of_the_pair_and_the_header_is_reported_at_once() {
        let e = credentials(&[
            ("WEBHOOK_USERNAME", "u"),
            ("WEBHOOK_HEADER_NAME", "Bad Name"),
            ("WEBHOOK_HEADER_SECRET", "a\nb"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "WEBHOOK_SECRET",
            "WEBHOOK_HEADER_NAME",
            "WEBHOOK_HEADER_SECRET",
        ] {
            assert!(e.contains(name), "{name}: {e}");
        }
        assert!(e.starts_with("3 configuration problems"), "{e}");
        assert!(!e.contains("a\nb"), "{e}");
    }

    #[test]
    fn the_header_name_keeps_its_case_and_may_not_be_authorization_beside_basic() {
        let c = credentials(&[
            ("WEBHOOK_HEADER_NAME", " X-Hook-Key "),
            ("WEBHOOK_HEADER_SECRET", "v"),
        ])
        .unwrap();
        assert_eq!(c.header.unwrap().0, "X-Hook-Key");
        let e = credentials(&[
            ("WEBHOOK_SECRET", "s"),
            ("WEBHOOK_HEADER_NAME", "Authorization"),
            ("WEBHOOK_HEADER_SECRET", "v"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("WEBHOOK_HEADER_NAME"), "{e}");
        let e = credentials(&[("WEBHOOK_USERNAME", "a:b"), ("WEBHOOK_SECRET", "s")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WEBHOOK_USERNAME"), "{e}");
    }
}
