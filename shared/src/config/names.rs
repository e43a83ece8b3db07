//! The one table of setting names: each setting's canonical name, the Python peer's names accepted as
//! aliases, and which settings are secrets (and so may also come from Secrets Manager or SSM). The
//! README's settings table is checked against it by a test, so the two cannot drift.

/// How an alias's value becomes the canonical setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// The same value.
    Same,
    /// Minutes (the peer's `OCEAN__SCHEDULED_RESYNC_INTERVAL`) to seconds.
    MinutesToSeconds,
    /// The peer's `isProjectsLimited` boolean to a subscription scope: `true` is `project`.
    ProjectsLimitedToScope,
}

#[derive(Debug, Clone, Copy)]
pub struct Alias {
    pub name: &'static str,
    pub convert: Convert,
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub aliases: &'static [Alias],
    /// A secret: never printed, and also read from `<NAME>_SECRET_ARN` or `<NAME>_SSM_PARAMETER`.
    pub secret: bool,
}

const fn same(name: &'static str) -> Alias {
    Alias {
        name,
        convert: Convert::Same,
    }
}

const fn plain(name: &'static str, aliases: &'static [Alias]) -> Setting {
    Setting {
        name,
        aliases,
        secret: false,
    }
}

const fn secret(name: &'static str, aliases: &'static [Alias]) -> Setting {
    Setting {
        name,
        aliases,
        secret: true,
    }
}

/// Every setting the functions and the CLI read, canonical name first. The aliases are the variable
/// names of the peer's installation (Ocean: `OCEAN__PORT__*` for the framework,
/// `OCEAN__INTEGRATION__CONFIG__<KEY>` for the integration's `spec.yaml` keys).
pub const SETTINGS: &[Setting] = &[
    plain(
        "ADO_ORG_URL",
        &[same("OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL")],
    ),
    secret(
        "ADO_PAT",
        &[same("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN")],
    ),
    plain("ADO_CLIENT_ID", &[]),
    secret("ADO_CLIENT_SECRET", &[]),
    plain("ADO_TENANT_ID", &[]),
    plain("ADO_AUTHORITY_URL", &[]),
    plain("ADO_API_VERSION", &[]),
    plain("ADO_MAX_CONCURRENCY", &[]),
    plain("ADO_TIMEOUT_SECS", &[]),
    plain("ADO_MAX_RETRIES", &[]),
    secret("ADO_EXTRA_HEADERS", &[]),
    plain(
        "ADO_EXCLUDED_TAGS",
        &[same("OCEAN__INTEGRATION__CONFIG__EXCLUDED_TAGS")],
    ),
    plain("CATALOG_BASE_URL", &[same("OCEAN__PORT__BASE_URL")]),
    secret("CATALOG_CLIENT_ID", &[same("OCEAN__PORT__CLIENT_ID")]),
    secret(
        "CATALOG_CLIENT_SECRET",
        &[same("OCEAN__PORT__CLIENT_SECRET")],
    ),
    plain("CATALOG_DB", &[]),
    plain("CATALOG_TIMEOUT_SECS", &[]),
    plain("CATALOG_MAX_RETRIES", &[]),
    plain(
        "INTEGRATION_IDENTIFIER",
        &[same("OCEAN__INTEGRATION__IDENTIFIER")],
    ),
    plain(
        "INITIALIZE_PORT_RESOURCES",
        &[same("OCEAN__INITIALIZE_PORT_RESOURCES")],
    ),
    plain("MAPPING_FILE", &[]),
    plain("MAPPING", &[]),
    plain("MAPPING_ALLOW_ENV", &[]),
    plain(
        "WEBHOOK_USERNAME",
        &[same("OCEAN__INTEGRATION__CONFIG__WEBHOOK_AUTH_USERNAME")],
    ),
    secret(
        "WEBHOOK_SECRET",
        &[same("OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET")],
    ),
    plain("WEBHOOK_HEADER_NAME", &[]),
    secret("WEBHOOK_HEADER_SECRET", &[]),
    plain("WEBHOOK_ALLOW_UNAUTHENTICATED", &[]),
    plain("WEBHOOK_MAX_BODY_BYTES", &[]),
    plain("WEBHOOK_URL", &[]),
    plain(
        "SUBSCRIPTIONS_SCOPE",
        &[Alias {
            name: "OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED",
            convert: Convert::ProjectsLimitedToScope,
        }],
    ),
    plain(
        "RESYNC_INTERVAL_SECS",
        &[Alias {
            name: "OCEAN__SCHEDULED_RESYNC_INTERVAL",
            convert: Convert::MinutesToSeconds,
        }],
    ),
    plain("ACTIONS_ENABLED", &[]),
    secret("ACTIONS_WEBHOOK_SECRET", &[]),
    plain("ACTIONS_RUN_TIMEOUT_SECS", &[]),
    plain("ACTIONS_CLAIM_SECS", &[]),
    plain("QUEUE_URL", &[]),
    plain("DLQ_URL", &[]),
    plain("LOG_LEVEL", &[]),
    plain("LOG_FORMAT", &[]),
];

/// The peer's settings that have no counterpart here: accepted (so a copied installation starts) and
/// logged once with the reason.
pub const PEER_IGNORED: &[(&str, &str)] = &[
    (
        "OCEAN__EVENT_LISTENER__TYPE",
        "the schedule (or `serve`) decides when resyncs run, and the webhook function takes live events",
    ),
    (
        "OCEAN__SEND_RAW_DATA_EXAMPLES",
        "raw examples are not sent to the catalog; preview a mapping with `ado-sync map`",
    ),
    (
        "OCEAN__BASE_URL",
        "the peer's own address; set WEBHOOK_URL to the webhook function's URL",
    ),
    (
        "OCEAN__INTEGRATION__CONFIG__APP_HOST",
        "the peer's own address; set WEBHOOK_URL to the webhook function's URL",
    ),
    (
        "OCEAN__INTEGRATION__TYPE",
        "the type is always azure-devops",
    ),
    (
        "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE",
        "only Single Account (a personal access token) is supported",
    ),
    (
        "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URLS",
        "one organisation per installation: set ADO_ORG_URL",
    ),
    (
        "OCEAN__INTEGRATION__CONFIG__CLIENT_ID",
        "the peer uses it only with Multiple Accounts; for one organisation set ADO_CLIENT_ID, ADO_CLIENT_SECRET and ADO_TENANT_ID",
    ),
    (
        "OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET",
        "the peer uses it only with Multiple Accounts; for one organisation set ADO_CLIENT_ID, ADO_CLIENT_SECRET and ADO_TENANT_ID",
    ),
    (
        "OCEAN__INTEGRATION__CONFIG__TENANT_ID",
        "the peer uses it only with Multiple Accounts; for one organisation set ADO_CLIENT_ID, ADO_CLIENT_SECRET and ADO_TENANT_ID",
    ),
];

/// Suffix of the variable naming a Secrets Manager secret (id or ARN, optionally `#jsonKey`).
pub const SECRET_ARN_SUFFIX: &str = "_SECRET_ARN";
/// Suffix of the variable naming an SSM parameter (read with decryption).
pub const SSM_PARAMETER_SUFFIX: &str = "_SSM_PARAMETER";

pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Why an alias's value has no canonical form. It quotes the value: no secret setting has a
/// converting alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{value:?} is not a whole number of minutes")]
    NotMinutes {
        value: String,
        #[source]
        source: Option<std::num::ParseIntError>,
    },
    #[error("{value:?} is not true or false")]
    NotABoolean { value: String },
}

/// Converts an alias's value to the canonical form.
pub fn convert(alias: &Alias, value: &str) -> Result<String, ConvertError> {
    match alias.convert {
        Convert::Same => Ok(value.to_owned()),
        Convert::MinutesToSeconds => {
            let not_minutes = |source| ConvertError::NotMinutes {
                value: value.to_owned(),
                source,
            };
            let minutes = value
                .trim()
                .parse::<u64>()
                .map_err(|e| not_minutes(Some(e)))?;
            // Too many minutes to count in seconds is not a whole number of minutes we can use.
            minutes
                .checked_mul(60)
                .map(|s| s.to_string())
                .ok_or_else(|| not_minutes(None))
        }
        Convert::ProjectsLimitedToScope => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok("project".into()),
            "false" | "0" | "no" => Ok("org".into()),
            _ => Err(ConvertError::NotABoolean {
                value: value.to_owned(),
            }),
        },
    }
}
