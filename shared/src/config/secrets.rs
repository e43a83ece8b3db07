//! Secret settings kept in AWS Secrets Manager or SSM Parameter Store, fetched once at cold start.
//! A secret setting `NAME` may come from `NAME_SECRET_ARN` (a secret id or ARN; the whole
//! `SecretString`, or one key of a JSON secret with `#key`) or from `NAME_SSM_PARAMETER` (a parameter
//! name, read with decryption). Errors name the setting and the source, never the value.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::aws::{AwsAccess, AwsError, SECRETS_MANAGER, SSM};

/// Where one secret setting's value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    SecretsManager {
        secret_id: String,
        json_key: Option<String>,
    },
    SsmParameter {
        name: String,
    },
}

impl SecretSource {
    /// `id#key` picks one key of a JSON secret. `#` never occurs in secret names or ARNs.
    pub fn secrets_manager(reference: &str) -> Self {
        let reference = reference.trim();
        match reference.rsplit_once('#') {
            Some((id, key)) if !key.is_empty() => Self::SecretsManager {
                secret_id: id.to_owned(),
                json_key: Some(key.to_owned()),
            },
            _ => Self::SecretsManager {
                secret_id: reference.trim_end_matches('#').to_owned(),
                json_key: None,
            },
        }
    }

    pub fn ssm_parameter(name: &str) -> Self {
        Self::SsmParameter {
            name: name.trim().to_owned(),
        }
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SecretsManager {
                secret_id,
                json_key: None,
            } => write!(f, "Secrets Manager secret {secret_id:?}"),
            Self::SecretsManager {
                secret_id,
                json_key: Some(key),
            } => write!(f, "key {key:?} of Secrets Manager secret {secret_id:?}"),
            Self::SsmParameter { name } => write!(f, "SSM parameter {name:?}"),
        }
    }
}

/// Why a secret could not be read. Never holds the value: only the store's code and message, which
/// name the secret, or what is wrong with its shape.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The store refused or failed the read (not found, access denied, unreachable).
    #[error(transparent)]
    Store(#[from] AwsError),
    #[error("the secret has no SecretString (binary secrets are not supported)")]
    Binary,
    #[error("the parameter has no value")]
    NoValue,
    #[error("the secret is not a JSON object, so it has no key {key:?}")]
    NotAnObject { key: String },
    #[error("key {key:?} of the secret is not a string")]
    NotAString { key: String },
    #[error("the secret has no key {key:?}")]
    MissingKey { key: String },
    #[error("the value is empty")]
    Empty,
    /// Read without a secret store (tests and tools that take variables only).
    #[error("secret sources are not read here")]
    NotReadHere,
}

impl SecretError {
    /// A refusal the store explained with a code and, perhaps, a message.
    pub fn store(code: impl Into<String>, message: impl Into<String>) -> Self {
        SecretError::Store(AwsError {
            code: Some(code.into()),
            message: message.into(),
        })
    }
}

/// The two stores, as far as reading one value goes. `Err` says what went wrong without the value.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError>;
    async fn parameter(&self, name: &str) -> Result<SecretString, SecretError>;
}

/// Reads one source, picking the JSON key when asked. The value is never part of an error.
pub async fn fetch(
    store: &dyn SecretStore,
    source: &SecretSource,
) -> Result<SecretString, SecretError> {
    let value = match source {
        SecretSource::SecretsManager {
            secret_id,
            json_key,
        } => {
            let text = store.secret_string(secret_id).await?;
            match json_key {
                None => text,
                Some(key) => pick_key(&text, key)?,
            }
        }
        SecretSource::SsmParameter { name } => store.parameter(name).await?,
    };
    if value.expose_secret().trim().is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(value)
}

fn pick_key(text: &SecretString, key: &str) -> Result<SecretString, SecretError> {
    let key_owned = || key.to_owned();
    // The parse error is dropped on purpose: serde's message may quote the secret's text.
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text.expose_secret()) else {
        return Err(SecretError::NotAnObject { key: key_owned() });
    };
    match map.get(key) {
        Some(Value::String(s)) => Ok(SecretString::from(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(SecretString::from(v.to_string())),
        Some(_) => Err(SecretError::NotAString { key: key_owned() }),
        None => Err(SecretError::MissingKey { key: key_owned() }),
    }
}

/// The AWS adapter: the default configuration chain (Lambda role, environment, profile). It honours
/// `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM`,
/// which is how tests reach a local emulator.
/// The Secrets Manager and SSM adapter: `GetSecretValue` and `GetParameter` (with decryption) as
/// [`crate::aws`] calls them.
#[derive(Debug, Clone)]
pub struct AwsSecretStore {
    access: AwsAccess,
}

impl AwsSecretStore {
    pub fn new(access: AwsAccess) -> Self {
        Self { access }
    }
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError> {
        let out = self
            .access
            .call(
                SECRETS_MANAGER,
                "GetSecretValue",
                &json!({ "SecretId": secret_id }),
            )
            .await?;
        match out.get("SecretString") {
            Some(Value::String(s)) => Ok(SecretString::from(s.clone())),
            _ => Err(SecretError::Binary),
        }
    }

    async fn parameter(&self, name: &str) -> Result<SecretString, SecretError> {
        let out = self
            .access
            .call(
                SSM,
                "GetParameter",
                &json!({ "Name": name, "WithDecryption": true }),
            )
            .await?;
        match out.pointer("/Parameter/Value") {
            Some(Value::String(s)) => Ok(SecretString::from(s.clone())),
            _ => Err(SecretError::NoValue),
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct MemorySecretStore {
    pub secrets: std::collections::HashMap<String, String>,
    pub parameters: std::collections::HashMap<String, String>,
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl SecretStore for MemorySecretStore {
    async fn secret_string(&self, secret_id: &str) -> Result<SecretString, SecretError> {
        self.secrets
            .get(secret_id)
            .map(|v| SecretString::from(v.clone()))
            .ok_or_else(|| {
                SecretError::store(
                    "ResourceNotFoundException",
                    "Secrets Manager can't find the specified secret.",
                )
            })
    }

    async fn parameter(&self, name: &str) -> Result<SecretString, SecretError> {
        self.parameters
            .get(name)
            .map(|v| SecretString::from(v.clone()))
            .ok_or_else(|| SecretError::store("ParameterNotFound", ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MemorySecretStore {
        let mut s = MemorySecretStore::default();
        s.secrets.insert("plain".into(), "pat-1234".into());
        s.secrets
            .insert("json".into(), r#"{"pat":"pat-5678","n":7,"o":{}}"#.into());
        s.secrets.insert("blank".into(), " ".into());
        s.parameters.insert("/ado/pat".into(), "pat-ssm".into());
        s
    }

    async fn read(source: &str) -> Result<String, SecretError> {
        let source = if let Some(p) = source.strip_prefix("ssm:") {
            SecretSource::ssm_parameter(p)
        } else {
            SecretSource::secrets_manager(source)
        };
        fetch(&store(), &source)
            .await
            .map(|v| v.expose_secret().to_owned())
    }

    #[tokio::test]
    async fn a_whole_secret_a_json_key_and_a_parameter_resolve() {
        assert_eq!(read("plain").await.unwrap(), "pat-1234");
        assert_eq!(read("json#pat").await.unwrap(), "pat-5678");
        assert_eq!(read("json#n").await.unwrap(), "7");
        assert_eq!(read("ssm:/ado/pat").await.unwrap(), "pat-ssm");
    }

    #[tokio::test]
    async fn failures_say_what_is_wrong_without_the_value() {
        for (source, want) in [
            ("missing", "ResourceNotFoundException"),
            ("plain#pat", "not a JSON object"),
            ("json#nope", "no key \"nope\""),
            ("json#o", "not a string"),
            ("blank", "empty"),
            ("ssm:/nope", "ParameterNotFound"),
        ] {
            let e = read(source).await.unwrap_err().to_string();
            assert!(e.contains(want), "{source}: {e}");
            assert!(!e.contains("pat-"), "{source}: {e}");
        }
    }

    #[tokio::test]
    async fn a_store_refusal_keeps_its_code() {
        let e = read("missing").await.unwrap_err();
        assert!(
            matches!(&e, SecretError::Store(AwsError { code: Some(c), .. }) if c == "ResourceNotFoundException"),
            "{e:?}"
        );
        assert!(matches!(read("blank").await, Err(SecretError::Empty)));
    }

    #[test]
    fn sources_describe_themselves_by_id_only() {
        assert_eq!(
            SecretSource::secrets_manager("arn:aws:secretsmanager:eu-west-1:1:secret:ado-AbC#pat")
                .to_string(),
            "key \"pat\" of Secrets Manager secret \"arn:aws:secretsmanager:eu-west-1:1:secret:ado-AbC\""
        );
        assert_eq!(
            SecretSource::ssm_parameter(" /x ").to_string(),
            "SSM parameter \"/x\""
        );
    }
}
