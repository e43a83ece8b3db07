//! The webhook's settings: which credentials a delivery must carry, and how large it may be.

use std::sync::Arc;

use secrecy::SecretString;

use crate::actions::push::PushVerifier;
use crate::config::{ActionSettings, ConfigError, Env, WebhookCredentials};

/// Lambda's own cap on a synchronous request payload (Function URL and API Gateway alike).
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// What an incoming delivery must prove. Built once at cold start.
#[derive(Clone)]
pub struct WebhookSettings {
    /// `Authorization: Basic` username and password (the subscription's `basicAuthUsername` and
    /// `basicAuthPassword`); both must match.
    pub basic: Option<(String, SecretString)>,
    /// A custom header (lowercase name) and its value, sent through the subscription's `httpHeaders`.
    pub header: Option<(String, SecretString)>,
    /// Accept deliveries without credentials when none are configured. Never the default: an open
    /// endpoint lets anyone who finds the URL queue work against Azure DevOps.
    pub allow_unauthenticated: bool,
    pub max_body_bytes: usize,
    /// The verifier of webhook action invocations (`POST /actions`), when `ACTIONS_WEBHOOK_SECRET` is
    /// set; shared so its replay memory is one per process.
    pub actions: Option<Arc<PushVerifier>>,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field(
                "basic",
                &self.basic.as_ref().map(|(user, _)| (user, "[redacted]")),
            )
            .field(
                "header",
                &self.header.as_ref().map(|(name, _)| (name, "[redacted]")),
            )
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("actions", &self.actions.is_some())
            .finish()
    }
}

impl WebhookSettings {
    /// The webhook settings of the resolved environment (aliases applied, secrets fetched).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env.get(k))
    }

    /// Reads settings through `get` (the environment, or a map in tests). Blank values count as unset.
    /// The credentials follow the one rule of [`WebhookCredentials`], shared with the subscriptions;
    /// every problem is reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let credentials = WebhookCredentials::from_lookup(get)
            .map_err(|e| problems.push(e))
            .ok();

        let allow_unauthenticated = match get("WEBHOOK_ALLOW_UNAUTHENTICATED")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => {
                problems.push(ConfigError::Invalid {
                    name: "WEBHOOK_ALLOW_UNAUTHENTICATED",
                    reason: format!("{other:?} is not true or false"),
                });
                false
            }
        };
        if credentials
            .as_ref()
            .is_some_and(WebhookCredentials::is_empty)
            && !allow_unauthenticated
        {
            problems.push(ConfigError::Missing {
                name: "WEBHOOK_SECRET",
                hint: "(with WEBHOOK_USERNAME, default ado-sync) for Basic, or WEBHOOK_HEADER_NAME with WEBHOOK_HEADER_SECRET; \
                       set WEBHOOK_ALLOW_UNAUTHENTICATED=true only to run open on purpose",
            });
        }

        let max_body_bytes = match get("WEBHOOK_MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1024..=64 * 1024 * 1024).contains(&n) => n,
                _ => {
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_MAX_BODY_BYTES",
                        reason: format!("{v:?} is not a whole number from 1024 to 67108864"),
                    });
                    DEFAULT_MAX_BODY_BYTES
                }
            },
        };
        let actions = ActionSettings::from_lookup(get)
            .map_err(|e| problems.push(e))
            .ok()
            .and_then(|a| a.webhook_secret)
            .map(|secret| Arc::new(PushVerifier::new(secret)));
        ConfigError::check(problems)?;
        let WebhookCredentials { basic, header } =
            credentials.expect("unreadable credentials are a problem reported above");
        Ok(Self {
            basic,
            // Header names are case-insensitive; the check looks the lowercase name up.
            header: header.map(|(name, value)| (name.to_ascii_lowercase(), value)),
            allow_unauthenticated,
            max_body_bytes,
            actions,
        })
    }

    /// True when deliveries are accepted without any credential.
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.header.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<WebhookSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WebhookSettings::from_lookup(|k| map.get(k).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        settings(vars).unwrap_err().to_string()
    }

    #[test]
    fn no_credential_configured_fails_naming_webhook_secret() {
        let e = error(&[]);
        assert!(e.contains("WEBHOOK_SECRET"), "{e}");
        let e = error(&[("WEBHOOK_ALLOW_UNAUTHENTICATED", "false")]);
        assert!(e.contains("WEBHOOK_SECRET"), "{e}");
        let e = error(&[("WEBHOOK_SECRET", "  ")]);
        assert!(e.contains("WEBHOOK_SECRET"), "{e}");
    }

    #[test]
    fn half_a_credential_names_the_missing_half() {
        assert!(error(&[("WEBHOOK_USERNAME", "u")]).contains("WEBHOOK_SECRET"));
        assert!(error(&[("WEBHOOK_HEADER_SECRET", "s")]).contains("WEBHOOK_HEADER_NAME"));
        assert!(error(&[("WEBHOOK_HEADER_NAME", "x-hook")]).contains("WEBHOOK_HEADER_SECRET"));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let e = error(&[
            ("WEBHOOK_HEADER_NAME", "x hook"),
            ("WEBHOOK_HEADER_SECRET", "s"),
        ]);
        assert!(e.contains("WEBHOOK_HEADER_NAME"), "{e}");
        let e = error(&[
            ("WEBHOOK_HEADER_SECRET", "s"),
            ("WEBHOOK_HEADER_NAME", "x-hook"),
            ("WEBHOOK_ALLOW_UNAUTHENTICATED", "maybe"),
        ]);
        assert!(e.contains("WEBHOOK_ALLOW_UNAUTHENTICATED"), "{e}");
        let e = error(&[
            ("WEBHOOK_HEADER_SECRET", "s"),
            ("WEBHOOK_HEADER_NAME", "x-hook"),
            ("WEBHOOK_MAX_BODY_BYTES", "lots"),
        ]);
        assert!(e.contains("WEBHOOK_MAX_BODY_BYTES"), "{e}");
        let e = error(&[
            ("WEBHOOK_USERNAME", "ado"),
            ("WEBHOOK_SECRET", "s"),
            ("WEBHOOK_HEADER_NAME", "Authorization"),
            ("WEBHOOK_HEADER_SECRET", "s"),
        ]);
        assert!(e.contains("WEBHOOK_HEADER_NAME"), "{e}");
    }

    #[test]
    fn both_modes_read_together_with_defaults() {
        let s = settings(&[
            ("WEBHOOK_USERNAME", "ado"),
            ("WEBHOOK_SECRET", "webhook-secret"),
            ("WEBHOOK_HEADER_NAME", "X-Ado-Sync-Token"),
            ("WEBHOOK_HEADER_SECRET", "header-secret"),
        ])
        .unwrap();
        let (user, password) = s.basic.as_ref().unwrap();
        assert_eq!(user, "ado");
        assert_eq!(password.expose_secret(), "webhook-secret");
        let (name, value) = s.header.as_ref().unwrap();
        assert_eq!(name, "x-ado-sync-token");
        assert_eq!(value.expose_secret(), "header-secret");
        assert!(!s.allow_unauthenticated && !s.is_open());
        assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn running_open_takes_an_explicit_opt_in() {
        let s = settings(&[
            ("WEBHOOK_ALLOW_UNAUTHENTICATED", "TRUE"),
            ("WEBHOOK_MAX_BODY_BYTES", "65536"),
        ])
        .unwrap();
        assert!(s.allow_unauthenticated && s.is_open());
        assert_eq!(s.max_body_bytes, 65536);
    }

    #[test]
    fn secrets_are_absent_from_debug() {
        let s = settings(&[
            ("WEBHOOK_USERNAME", "ado"),
            ("WEBHOOK_SECRET", "hunter2-basic"),
            ("WEBHOOK_HEADER_NAME", "x-hook"),
            ("WEBHOOK_HEADER_SECRET", "hunter2-header"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("ado") && debug.contains("x-hook"), "{debug}");
    }

    /// Azure DevOps' delivery of a subscription's `consumerInputs`: the Basic header from the user name
    /// and password, and each `Name:value` line of `httpHeaders` as a header.
    fn delivery_headers(body: &serde_json::Value) -> reqwest::header::HeaderMap {
        use base64::Engine;
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
        let inputs = &body["consumerInputs"];
        let mut headers = HeaderMap::new();
        if let (Some(user), Some(password)) = (
            inputs["basicAuthUsername"].as_str(),
            inputs["basicAuthPassword"].as_str(),
        ) {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
            );
        }
        if let Some(lines) = inputs["httpHeaders"].as_str() {
            for line in lines.lines() {
                let (name, value) = line.split_once(':').unwrap();
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
        }
        headers
    }

    #[test]
    fn the_webhook_and_the_subscriptions_read_the_credentials_with_one_rule() {
        use crate::ado::hooks::{CATALOGUE, DesiredSubscription, SubscriptionSettings};
        use crate::webhook::authenticate;

        let cases: &[&[(&str, &str)]] = &[
            // A secret alone: both default the user name.
            &[("WEBHOOK_SECRET", "pw")],
            &[("WEBHOOK_USERNAME", "ado"), ("WEBHOOK_SECRET", "pw")],
            &[
                ("WEBHOOK_HEADER_NAME", "X-Hook-Key"),
                ("WEBHOOK_HEADER_SECRET", "v"),
            ],
            &[
                ("WEBHOOK_SECRET", "pw"),
                ("WEBHOOK_HEADER_NAME", "X-Hook-Key"),
                ("WEBHOOK_HEADER_SECRET", "v"),
            ],
            // Refused by both, naming the same setting.
            &[("WEBHOOK_USERNAME", "ado")],
            &[("WEBHOOK_HEADER_NAME", "X-Hook-Key")],
            &[("WEBHOOK_HEADER_SECRET", "v")],
            &[
                ("WEBHOOK_HEADER_NAME", "Bad Name"),
                ("WEBHOOK_HEADER_SECRET", "v"),
            ],
            &[
                ("WEBHOOK_HEADER_NAME", "X-K"),
                ("WEBHOOK_HEADER_SECRET", "a\r\nb"),
            ],
            &[("WEBHOOK_USERNAME", "a:b"), ("WEBHOOK_SECRET", "pw")],
            &[
                ("WEBHOOK_SECRET", "pw"),
                ("WEBHOOK_HEADER_NAME", "Authorization"),
                ("WEBHOOK_HEADER_SECRET", "v"),
            ],
        ];
        for vars in cases {
            let webhook = settings(vars);
            let mut with_url = vars.to_vec();
            with_url.push(("WEBHOOK_URL", "https://hooks.example.com/webhook"));
            let map: HashMap<&str, &str> = with_url.iter().copied().collect();
            let subscriptions =
                SubscriptionSettings::from_lookup(|k| map.get(k).map(|v| v.to_string()));
            match (webhook, subscriptions) {
                (Ok(webhook), Ok(subscriptions)) => {
                    // What the subscriptions register is what the webhook accepts.
                    let body = DesiredSubscription {
                        event: &CATALOGUE[0],
                        project_id: None,
                    }
                    .body(&subscriptions);
                    let headers = delivery_headers(&body);
                    assert_eq!(authenticate(&webhook, &headers), Ok(()), "{vars:?}");
                }
                (Err(a), Err(b)) => {
                    let named = |e: ConfigError| {
                        let mut names: Vec<&str> = e
                            .into_list()
                            .into_iter()
                            .map(|p| match p {
                                ConfigError::Missing { name, .. }
                                | ConfigError::Invalid { name, .. }
                                | ConfigError::Secret { name, .. } => name,
                                ConfigError::Several(_) => unreachable!("flattened"),
                            })
                            .collect();
                        names.sort_unstable();
                        names
                    };
                    let (a, b) = (named(a), named(b));
                    assert!(!a.is_empty(), "{vars:?}");
                    assert_eq!(a, b, "{vars:?}");
                }
                (a, b) => panic!("{vars:?}: the webhook says {a:?}, the subscriptions {b:?}"),
            }
        }
    }
}
