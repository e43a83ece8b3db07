//! Checks a delivery's credentials. Azure DevOps signs nothing, so Basic credentials and/or a custom
//! header are all there is; a request without them is refused (the peer integration accepts it).

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::ExposeSecret;
use subtle::{Choice, ConstantTimeEq};

use super::WebhookSettings;

/// Why a request was refused. Carries no credential material, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("the {0} header was sent more than once")]
    Repeated(&'static str),
    #[error("the authorization scheme is not Basic")]
    WrongScheme,
    #[error("the Basic credentials are not base64 of user:password")]
    Malformed,
    #[error("the credentials do not match")]
    Mismatch,
}

impl AuthError {
    /// A short stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing(_) => "missing",
            Self::Repeated(_) => "repeated",
            Self::WrongScheme => "wrong-scheme",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Every configured check must pass. Both checks run to the end even when the first fails, so the
/// time taken says nothing about which one failed.
pub fn authenticate(settings: &WebhookSettings, headers: &HeaderMap) -> Result<(), AuthError> {
    if settings.is_open() {
        // `WebhookSettings::from_lookup` only allows this with WEBHOOK_ALLOW_UNAUTHENTICATED.
        return if settings.allow_unauthenticated {
            Ok(())
        } else {
            Err(AuthError::Missing("authorization"))
        };
    }
    let basic = settings
        .basic
        .as_ref()
        .map(|(user, password)| check_basic(headers, user, password.expose_secret()));
    let header = settings
        .header
        .as_ref()
        .map(|(name, value)| check_header(headers, name, value.expose_secret()));
    basic.unwrap_or(Ok(()))?;
    header.unwrap_or(Ok(()))
}

fn single<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a [u8], AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(AuthError::Missing(name))?;
    if values.next().is_some() {
        return Err(AuthError::Repeated(name));
    }
    Ok(first.as_bytes())
}

fn check_basic(headers: &HeaderMap, user: &str, password: &str) -> Result<(), AuthError> {
    let value = single(headers, AUTHORIZATION.as_str())?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value
        .trim()
        .split_once(char::is_whitespace)
        .ok_or(AuthError::WrongScheme)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::WrongScheme);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| AuthError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::Malformed)?;
    let (sent_user, sent_password) = (&decoded[..colon], &decoded[colon + 1..]);
    // `&` rather than `&&`: compare both halves whatever the first says.
    let matches: Choice =
        sent_user.ct_eq(user.as_bytes()) & sent_password.ct_eq(password.as_bytes());
    if bool::from(matches) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

fn check_header(headers: &HeaderMap, name: &str, expected: &str) -> Result<(), AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(AuthError::Missing("configured"))?;
    if values.next().is_some() {
        return Err(AuthError::Repeated("configured"));
    }
    // ADO sends `httpHeaders` values as typed; surrounding blanks are not part of the secret.
    let sent = first.as_bytes().trim_ascii();
    if bool::from(sent.ct_eq(expected.trim().as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use secrecy::SecretString;

    use super::*;

    fn basic_settings() -> WebhookSettings {
        WebhookSettings {
            basic: Some(("ado".into(), SecretString::from("webhook-secret"))),
            header: None,
            allow_unauthenticated: false,
            max_body_bytes: 1024,
            actions: None,
        }
    }

    fn header_settings() -> WebhookSettings {
        WebhookSettings {
            basic: None,
            header: Some(("x-ado-sync-token".into(), SecretString::from("tok-123"))),
            allow_unauthenticated: false,
            max_body_bytes: 1024,
            actions: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn basic(user: &str, password: &str) -> String {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}")
    }

    #[test]
    fn matching_basic_credentials_pass_whatever_the_scheme_case() {
        let s = basic_settings();
        let token = basic("ado", "webhook-secret");
        assert_eq!(
            authenticate(&s, &headers(&[("authorization", &token)])),
            Ok(())
        );
        let lower = token.replacen("Basic", "bAsIc", 1);
        assert_eq!(
            authenticate(&s, &headers(&[("authorization", &lower)])),
            Ok(())
        );
    }

    #[test]
    fn a_password_may_contain_colons() {
        let mut s = basic_settings();
        s.basic = Some(("ado".into(), SecretString::from("a:b:c")));
        let token = basic("ado", "a:b:c");
        assert_eq!(
            authenticate(&s, &headers(&[("authorization", &token)])),
            Ok(())
        );
    }

    #[test]
    fn wrong_or_missing_basic_credentials_are_refused_with_a_reason() {
        let s = basic_settings();
        let cases: &[(HeaderMap, AuthError)] = &[
            (headers(&[]), AuthError::Missing("authorization")),
            (
                headers(&[("authorization", &basic("ado", "forged"))]),
                AuthError::Mismatch,
            ),
            (
                headers(&[("authorization", &basic("mallory", "webhook-secret"))]),
                AuthError::Mismatch,
            ),
            (
                headers(&[("authorization", &basic("ado", ""))]),
                AuthError::Mismatch,
            ),
            (
                headers(&[("authorization", "Bearer webhook-secret")]),
                AuthError::WrongScheme,
            ),
            (
                headers(&[("authorization", "Basic")]),
                AuthError::WrongScheme,
            ),
            (
                headers(&[("authorization", "Basic !!!not-base64")]),
                AuthError::Malformed,
            ),
            (
                headers(&[(
                    "authorization",
                    &format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("no-colon")
                    ),
                )]),
                AuthError::Malformed,
            ),
            (
                headers(&[
                    ("authorization", &basic("ado", "webhook-secret")),
                    ("authorization", &basic("ado", "webhook-secret")),
                ]),
                AuthError::Repeated("authorization"),
            ),
        ];
        for (h, expected) in cases {
            assert_eq!(authenticate(&s, h), Err(*expected), "{h:?}");
        }
    }

    #[test]
    fn header_secret_mode_checks_the_configured_header() {
        let s = header_settings();
        assert_eq!(
            authenticate(&s, &headers(&[("x-ado-sync-token", "tok-123")])),
            Ok(())
        );
        assert_eq!(
            authenticate(&s, &headers(&[("X-Ado-Sync-Token", " tok-123 ")])),
            Ok(())
        );
        assert_eq!(
            authenticate(&s, &headers(&[("x-ado-sync-token", "tok-124")])),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            authenticate(&s, &headers(&[("authorization", &basic("ado", "tok-123"))])),
            Err(AuthError::Missing("configured"))
        );
    }

    #[test]
    fn with_both_modes_configured_both_must_pass() {
        let mut s = basic_settings();
        s.header = header_settings().header;
        let good_basic = basic("ado", "webhook-secret");
        assert_eq!(
            authenticate(
                &s,
                &headers(&[
                    ("authorization", &good_basic),
                    ("x-ado-sync-token", "tok-123")
                ])
            ),
            Ok(())
        );
        assert!(authenticate(&s, &headers(&[("authorization", &good_basic)])).is_err());
        assert!(authenticate(&s, &headers(&[("x-ado-sync-token", "tok-123")])).is_err());
        assert!(
            authenticate(
                &s,
                &headers(&[
                    ("authorization", &basic("ado", "nope")),
                    ("x-ado-sync-token", "tok-123")
                ])
            )
            .is_err()
        );
    }

    #[test]
    fn an_open_endpoint_needs_the_explicit_opt_in() {
        let mut s = basic_settings();
        s.basic = None;
        assert!(authenticate(&s, &headers(&[])).is_err());
        s.allow_unauthenticated = true;
        assert_eq!(authenticate(&s, &headers(&[])), Ok(()));
    }
}
