//! The tenant registry of the hosted service: one record per tenant (its catalog account, its Azure
//! DevOps organisations with their sign-in, its webhook credential, its options), kept in a real
//! database: a DynamoDB table in AWS ([`dynamo`]), a SQLite file for a self-hosted `serve`
//! ([`sqlite`]). A record holds no secret value: credentials are references to Secrets Manager or SSM
//! (or, self-hosted, to an environment variable), and a generated webhook secret is kept only as a
//! salted hash.

pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::failure::Failure;

/// A tenant id: it is a path segment of the tenant's webhook URL (`/t/{tenant}/webhook`) and a FIFO
/// group prefix, so 1 to 40 lowercase letters, digits and `-`, starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    #[error(
        "{0:?} is not a tenant id (1 to 40 lowercase letters, digits and '-', not starting with '-')"
    )]
    TenantId(String),
    /// The value is not repeated: it may be a secret pasted where its reference belongs.
    #[error(
        "not a secret reference: give a Secrets Manager ARN (arn:…:secretsmanager:…, optionally #jsonKey), an SSM parameter name (/…) or env:VARIABLE, never the secret itself"
    )]
    SecretRef,
    #[error("{0:?} is not an http(s) URL")]
    Url(String),
    #[error("a tenant needs at least one Azure DevOps organisation")]
    NoOrganization,
    #[error("organisation {0} is listed twice")]
    DuplicateOrganization(String),
}

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, InvalidRecord> {
        let ok = (1..=40).contains(&s.len())
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidRecord::TenantId(s.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidRecord;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

/// Where a secret lives, never the secret: a Secrets Manager secret (ARN, optionally `#jsonKey`), an SSM
/// parameter (`/name`), or for a self-hosted `serve` an environment variable (`env:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretRef(String);

impl SecretRef {
    pub fn parse(s: &str) -> Result<Self, InvalidRecord> {
        let s = s.trim();
        let arn = s.starts_with("arn:") && s.split(':').nth(2) == Some("secretsmanager");
        let ssm = s.len() > 1 && s.starts_with('/');
        let env = s.strip_prefix("env:").is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
        if (arn || ssm || env) && !s.chars().any(char::is_whitespace) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidRecord::SecretRef)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretRef {
    type Error = InvalidRecord;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> Self {
        r.0
    }
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRecord {
    pub id: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub catalog: CatalogAccount,
    pub organizations: Vec<Organization>,
    pub webhook: WebhookCredential,
    #[serde(default)]
    pub options: TenantOptions,
    pub created_at: String,
    pub updated_at: String,
}

/// The tenant's catalog account: its API and client credentials, by reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogAccount {
    pub base_url: String,
    pub client_id: SecretRef,
    pub client_secret: SecretRef,
}

/// One Azure DevOps organisation of the tenant and how to sign in to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub url: String,
    pub auth: OrgAuth,
}

/// The peer's `accountMode`: a PAT per organisation ("Single Account"), or an Entra ID service
/// principal that can serve several organisations ("Multiple Accounts").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum OrgAuth {
    Pat {
        pat: SecretRef,
    },
    #[serde(rename_all = "camelCase")]
    ServicePrincipal {
        tenant_id: String,
        client_id: String,
        client_secret: SecretRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<String>,
    },
}

/// What a webhook delivery for this tenant must carry: Basic credentials whose password is either
/// generated (kept as a salted hash only) or stored elsewhere (a reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCredential {
    pub username: String,
    pub secret: StoredSecret,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StoredSecret {
    /// SHA-256 of salt and secret, both base64. A generated secret has 256 random bits, so a fast
    /// hash is enough: there is nothing to guess.
    Hash {
        salt: String,
        sha256: String,
    },
    Ref {
        at: SecretRef,
    },
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredSecret::Hash { .. } => f.write_str("Hash([hashed])"),
            StoredSecret::Ref { at } => write!(f, "Ref({})", at.as_str()),
        }
    }
}

impl StoredSecret {
    /// A new random secret (shown once to whoever asked for it) and its stored form.
    pub fn generate() -> (String, StoredSecret) {
        let secret = random_text();
        (secret.clone(), Self::hashed(&secret, &random_text()))
    }

    fn hashed(secret: &str, salt: &str) -> StoredSecret {
        StoredSecret::Hash {
            salt: salt.to_owned(),
            sha256: digest(salt, secret),
        }
    }

    /// Whether `given` is the hashed secret, in constant time. `None` for a reference: the caller
    /// resolves it and compares itself.
    pub fn matches(&self, given: &str) -> Option<bool> {
        use subtle::ConstantTimeEq;
        match self {
            StoredSecret::Hash { salt, sha256 } => {
                let got = digest(salt, given);
                Some(bool::from(got.as_bytes().ct_eq(sha256.as_bytes())))
            }
            StoredSecret::Ref { .. } => None,
        }
    }
}

fn digest(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// 256 random bits from the OS generator (through uuid's v4, which reads it), URL-safe base64.
fn random_text() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The tenant's options: the peer's integration options that differ per customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantOptions {
    /// A mapping (`port-app-config` YAML or JSON) for this tenant; the catalog's integration record
    /// and then the shipped default otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// Seconds between full resyncs; the deployment's schedule when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_interval_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_tags: Vec<String>,
    /// Azure DevOps requests in flight per organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

impl TenantRecord {
    /// Checks what parsing alone does not: URLs, at least one organisation, no organisation twice.
    pub fn validate(&self) -> Result<(), InvalidRecord> {
        let http = |u: &str| {
            url::Url::parse(u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .map(|_| ())
                .ok_or_else(|| InvalidRecord::Url(u.chars().take(120).collect()))
        };
        if !matches!(self.catalog.base_url.as_str(), "eu" | "us") {
            http(&self.catalog.base_url)?;
        }
        if self.organizations.is_empty() {
            return Err(InvalidRecord::NoOrganization);
        }
        let mut seen = std::collections::HashSet::new();
        for org in &self.organizations {
            http(&org.url)?;
            if !seen.insert(org.url.trim_end_matches('/').to_ascii_lowercase()) {
                return Err(InvalidRecord::DuplicateOrganization(org.url.clone()));
            }
        }
        Ok(())
    }

    /// The path of this tenant's webhook, under the deployment's public URL.
    pub fn webhook_path(&self) -> String {
        format!("/t/{}/webhook", self.id)
    }
}

/// Why the registry could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant {0} already exists")]
    Exists(TenantId),
    #[error("no tenant {0}")]
    NotFound(TenantId),
    #[error("the tenant registry is unavailable: {0}")]
    Unavailable(Failure),
    #[error("the tenant registry refused the request: {0}")]
    Refused(Failure),
    #[error("a stored tenant record is unreadable: {0}")]
    Corrupt(String),
}

/// The registry: the port the admin commands and the hosted service take.
#[async_trait]
pub trait TenantRegistry: Send + Sync {
    /// Adds a new tenant; [`RegistryError::Exists`] when the id is taken.
    async fn add(&self, record: &TenantRecord) -> Result<(), RegistryError>;
    /// Replaces an existing tenant; [`RegistryError::NotFound`] when there is none.
    async fn replace(&self, record: &TenantRecord) -> Result<(), RegistryError>;
    async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, RegistryError>;
    /// Every tenant, ordered by id.
    async fn list(&self) -> Result<Vec<TenantRecord>, RegistryError>;
    /// `false` when there was none.
    async fn remove(&self, id: &TenantId) -> Result<bool, RegistryError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(id: &str) -> TenantRecord {
        TenantRecord {
            id: TenantId::parse(id).unwrap(),
            name: Some("Acme".into()),
            catalog: CatalogAccount {
                base_url: "eu".into(),
                client_id: SecretRef::parse("/acme/catalog-client-id").unwrap(),
                client_secret: SecretRef::parse(
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme-AbCdEf#secret",
                )
                .unwrap(),
            },
            organizations: vec![Organization {
                url: "https://dev.azure.com/acme".into(),
                auth: OrgAuth::Pat {
                    pat: SecretRef::parse("env:ACME_PAT").unwrap(),
                },
            }],
            webhook: WebhookCredential {
                username: "ado".into(),
                secret: StoredSecret::generate().1,
            },
            options: TenantOptions::default(),
            created_at: "2026-12-05T00:00:00Z".into(),
            updated_at: "2026-12-05T00:00:00Z".into(),
        }
    }

    #[test]
    fn tenant_ids_are_url_safe_and_bounded() {
        for ok in ["acme", "acme-2", "0x"] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "a/b", "a.b", &"a".repeat(41)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_references_never_values() {
        for ok in [
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            "/acme/pat",
            "env:ACME_PAT",
        ] {
            assert!(SecretRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "my-pat-value",
            "env:",
            "env:lower",
            "arn:aws:s3:::bucket",
            "/ with space",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_generated_webhook_secret_is_stored_only_as_a_salted_hash() {
        let (secret, stored) = StoredSecret::generate();
        assert!(secret.len() >= 43);
        assert_eq!(stored.matches(&secret), Some(true));
        assert_eq!(stored.matches("guess"), Some(false));
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains(&secret));
        assert!(!format!("{stored:?}").contains(&secret));
        let (_, other) = StoredSecret::generate();
        assert_ne!(
            stored, other,
            "salted: the same secret never hashes alike twice"
        );
    }

    #[test]
    fn a_record_round_trips_and_validates() {
        let r = record("acme");
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<TenantRecord>(&text).unwrap(), r);
        r.validate().unwrap();
        assert_eq!(r.webhook_path(), "/t/acme/webhook");
        let mut twice = r.clone();
        twice.organizations.push(twice.organizations[0].clone());
        assert!(matches!(
            twice.validate(),
            Err(InvalidRecord::DuplicateOrganization(_))
        ));
        let mut none = r;
        none.organizations.clear();
        assert_eq!(none.validate(), Err(InvalidRecord::NoOrganization));
    }
}
