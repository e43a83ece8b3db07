//! The resolved environment: every setting under its canonical name, read from the canonical variable
//! or a peer alias, with secret settings fetched from Secrets Manager or SSM. Built once at cold start;
//! the typed settings are parsed from it.

use std::collections::HashMap;

use futures::future::join_all;
use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::names::{self, PEER_IGNORED, SECRET_ARN_SUFFIX, SETTINGS, SSM_PARAMETER_SUFFIX};
use super::secrets::{self, AwsSecretStore, SecretSource, SecretStore};
use crate::aws::AwsIdentity;

enum Value {
    Plain(String),
    Secret(SecretString),
}

/// Settings by canonical name. `Debug` shows names only.
#[derive(Default)]
pub struct Env {
    values: HashMap<&'static str, Value>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.values.keys().copied().collect();
        names.sort_unstable();
        f.debug_struct("Env").field("set", &names).finish()
    }
}

/// A secret setting still to fetch.
struct Pending {
    name: &'static str,
    variable: String,
    source: SecretSource,
}

impl Pending {
    /// The problem of a secret setting that could not be read, and why.
    fn unread(self, reason: secrets::SecretError) -> ConfigError {
        ConfigError::Secret {
            name: self.name,
            variable: self.variable,
            from: Box::new(self.source),
            reason: Box::new(reason),
        }
    }
}

impl Env {
    /// The process environment, with secrets fetched as `aws` gives credentials and region (only when
    /// some secret setting names a source: a run without one never touches AWS).
    pub async fn load(aws: AwsIdentity) -> Result<Self, ConfigError> {
        let (env, problems) = Self::load_all(aws).await;
        ConfigError::check(problems)?;
        Ok(env)
    }

    /// Loads the environment and parses the typed settings from it, reporting the problems of both
    /// together: a start names everything that is wrong at once. A setting whose secret could not be
    /// read is not reported missing as well.
    pub async fn load_and<T>(
        aws: AwsIdentity,
        parse: impl FnOnce(&Env) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let (env, problems) = Self::load_all(aws).await;
        Self::parse_with(&env, problems, parse)
    }

    async fn load_all(aws: AwsIdentity) -> (Self, Vec<ConfigError>) {
        let (mut env, pending, mut problems) = Self::read(|k| std::env::var(k).ok());
        if !pending.is_empty() {
            match aws.resolve().await {
                Ok(access) => {
                    let store = AwsSecretStore::new(access);
                    problems.extend(env.fetch(pending, &store).await);
                }
                Err(e) => problems.extend(pending.into_iter().map(|p| p.unread(e.clone().into()))),
            }
        }
        (env, problems)
    }

    fn parse_with<T>(
        env: &Env,
        mut problems: Vec<ConfigError>,
        parse: impl FnOnce(&Env) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let unread: Vec<&'static str> = problems
            .iter()
            .filter_map(|p| match p {
                ConfigError::Secret { name, .. } => Some(*name),
                _ => None,
            })
            .collect();
        match parse(env) {
            Ok(t) if problems.is_empty() => return Ok(t),
            Ok(_) => {}
            Err(e) => problems.extend(e.into_list().into_iter().filter(
                |p| !matches!(p, ConfigError::Missing { name, .. } if unread.contains(name)),
            )),
        }
        Err(ConfigError::check(problems).expect_err("there are problems"))
    }

    /// As [`Env::load`], reading variables through `get` and secrets from `store`.
    pub async fn resolve(
        get: impl Fn(&str) -> Option<String>,
        store: &dyn SecretStore,
    ) -> Result<Self, ConfigError> {
        let (mut env, pending, mut problems) = Self::read(get);
        problems.extend(env.fetch(pending, store).await);
        ConfigError::check(problems)?;
        Ok(env)
    }

    /// Variables only, for tests and tools that have no secret sources: a secret source is a problem.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (env, pending, mut problems) = Self::read(get);
        problems.extend(
            pending
                .into_iter()
                .map(|p| p.unread(secrets::SecretError::NotReadHere)),
        );
        ConfigError::check(problems)?;
        Ok(env)
    }

    /// The value of a setting by canonical name. Blank values count as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).map(|v| match v {
            Value::Plain(s) => s.clone(),
            Value::Secret(s) => s.expose_secret().to_owned(),
        })
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Applies aliases and collects the secret sources to fetch.
    fn read(get: impl Fn(&str) -> Option<String>) -> (Self, Vec<Pending>, Vec<ConfigError>) {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut env = Env::default();
        let mut pending = Vec::new();
        let mut problems = Vec::new();
        for setting in SETTINGS {
            let canonical = get(setting.name);
            let mut from_alias = None;
            for alias in setting.aliases {
                let Some(raw) = get(alias.name) else { continue };
                match names::convert(alias, &raw) {
                    Ok(v) => {
                        from_alias.get_or_insert((alias.name, v));
                    }
                    Err(reason) => problems.push(ConfigError::Invalid {
                        name: alias.name,
                        reason: reason.to_string(),
                    }),
                }
            }
            let value = match (canonical, from_alias) {
                (Some(v), Some((alias, a))) => {
                    if v != a {
                        // Values stay out of the log: either may be a secret.
                        tracing::warn!(
                            setting = setting.name,
                            alias,
                            "both names are set and disagree; the canonical name wins"
                        );
                    }
                    Some(v)
                }
                (Some(v), None) => Some(v),
                (None, Some((alias, a))) => {
                    tracing::info!(setting = setting.name, alias, "read from the peer's name");
                    Some(a)
                }
                (None, None) => None,
            };
            let mut sources = Vec::new();
            if setting.secret {
                let arn_var = format!("{}{SECRET_ARN_SUFFIX}", setting.name);
                let ssm_var = format!("{}{SSM_PARAMETER_SUFFIX}", setting.name);
                if let Some(r) = get(&arn_var) {
                    sources.push((arn_var, SecretSource::secrets_manager(&r)));
                }
                if let Some(r) = get(&ssm_var) {
                    sources.push((ssm_var, SecretSource::ssm_parameter(&r)));
                }
            }
            match (value, sources.len()) {
                (Some(v), 0) if setting.secret => {
                    env.values.insert(setting.name, Value::Secret(v.into()));
                }
                (Some(v), 0) => {
                    env.values.insert(setting.name, Value::Plain(v));
                }
                (None, 0) => {}
                (None, 1) => {
                    let (variable, source) = sources.remove(0);
                    pending.push(Pending {
                        name: setting.name,
                        variable,
                        source,
                    });
                }
                _ => problems.push(ConfigError::Invalid {
                    name: setting.name,
                    reason: format!(
                        "set only one of {0} (or its peer alias), {0}{SECRET_ARN_SUFFIX} and {0}{SSM_PARAMETER_SUFFIX}",
                        setting.name
                    ),
                }),
            }
        }
        for (name, why) in PEER_IGNORED {
            let Some(v) = get(name) else { continue };
            if *name == "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE"
                && !v.trim().eq_ignore_ascii_case("single account")
            {
                problems.push(ConfigError::Invalid {
                    name,
                    reason: format!("{v:?}: {why}"),
                });
            } else {
                tracing::info!(setting = *name, reason = *why, "peer setting ignored");
            }
        }
        (env, pending, problems)
    }

    /// Fetches every pending secret at once; one problem per secret that could not be read.
    async fn fetch(&mut self, pending: Vec<Pending>, store: &dyn SecretStore) -> Vec<ConfigError> {
        let results = join_all(
            pending
                .iter()
                .map(|p| async move { secrets::fetch(store, &p.source).await }),
        )
        .await;
        let mut problems = Vec::new();
        for (p, result) in pending.into_iter().zip(results) {
            match result {
                Ok(value) => {
                    tracing::info!(setting = p.name, source = %p.source, "secret read");
                    self.values.insert(p.name, Value::Secret(value));
                }
                Err(reason) => problems.push(p.unread(reason)),
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::secrets::MemorySecretStore;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// A value for every alias, shaped for its conversion.
    fn alias_value(alias: &names::Alias) -> (&'static str, &'static str) {
        match alias.convert {
            names::Convert::Same => ("alias-value", "alias-value"),
            names::Convert::MinutesToSeconds => ("5", "300"),
            names::Convert::ProjectsLimitedToScope => ("true", "project"),
        }
    }

    #[test]
    fn every_alias_resolves_to_its_canonical_setting() {
        for setting in SETTINGS {
            for alias in setting.aliases {
                let (given, want) = alias_value(alias);
                let env = Env::from_lookup(lookup(&[(alias.name, given)])).unwrap();
                assert_eq!(
                    env.get(setting.name).as_deref(),
                    Some(want),
                    "{} -> {}",
                    alias.name,
                    setting.name
                );
            }
        }
    }

    #[test]
    fn the_peer_installation_names_are_all_accepted() {
        for name in [
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
            "OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN",
            "OCEAN__PORT__CLIENT_ID",
            "OCEAN__PORT__CLIENT_SECRET",
            "OCEAN__PORT__BASE_URL",
            "OCEAN__INTEGRATION__IDENTIFIER",
            "OCEAN__INITIALIZE_PORT_RESOURCES",
            "OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET",
            "OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED",
            "OCEAN__SCHEDULED_RESYNC_INTERVAL",
        ] {
            assert!(
                SETTINGS
                    .iter()
                    .any(|s| s.aliases.iter().any(|a| a.name == name)),
                "{name} is not an alias"
            );
        }
        for name in [
            "OCEAN__EVENT_LISTENER__TYPE",
            "OCEAN__SEND_RAW_DATA_EXAMPLES",
        ] {
            assert!(PEER_IGNORED.iter().any(|(n, _)| *n == name), "{name}");
            Env::from_lookup(lookup(&[(name, "ONCE")])).unwrap();
        }
    }

    #[test]
    fn the_canonical_name_wins_over_an_alias() {
        let env = Env::from_lookup(lookup(&[
            ("ADO_PAT", "canonical"),
            ("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN", "alias"),
            ("OCEAN__SCHEDULED_RESYNC_INTERVAL", "60"),
            ("RESYNC_INTERVAL_SECS", "10"),
        ]))
        .unwrap();
        assert_eq!(env.get("ADO_PAT").as_deref(), Some("canonical"));
        assert_eq!(env.get("RESYNC_INTERVAL_SECS").as_deref(), Some("10"));
    }

    #[test]
    fn unconvertible_aliases_and_multiple_accounts_are_problems_reported_together() {
        let e = Env::from_lookup(lookup(&[
            ("OCEAN__SCHEDULED_RESYNC_INTERVAL", "hourly"),
            ("OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED", "maybe"),
            (
                "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE",
                "Multiple Accounts",
            ),
        ]))
        .unwrap_err()
        .to_string();
        for name in [
            "OCEAN__SCHEDULED_RESYNC_INTERVAL",
            "OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED",
            "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE",
        ] {
            assert!(e.contains(name), "{e}");
        }
        Env::from_lookup(lookup(&[(
            "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE",
            "Single Account",
        )]))
        .unwrap();
    }

    #[tokio::test]
    async fn secrets_come_from_either_store_and_never_show_in_debug() {
        let mut store = MemorySecretStore::default();
        store
            .secrets
            .insert("ado".into(), r#"{"pat":"pat-1"}"#.into());
        store
            .parameters
            .insert("/catalog/secret".into(), "cs-2".into());
        let env = Env::resolve(
            lookup(&[
                ("ADO_PAT_SECRET_ARN", "ado#pat"),
                ("CATALOG_CLIENT_SECRET_SSM_PARAMETER", "/catalog/secret"),
                ("CATALOG_CLIENT_ID", "id-3"),
            ]),
            &store,
        )
        .await
        .unwrap();
        assert_eq!(env.get("ADO_PAT").as_deref(), Some("pat-1"));
        assert_eq!(env.get("CATALOG_CLIENT_SECRET").as_deref(), Some("cs-2"));
        let debug = format!("{env:?}");
        assert!(debug.contains("ADO_PAT"), "{debug}");
        for value in ["pat-1", "cs-2", "id-3"] {
            assert!(!debug.contains(value), "{debug}");
        }
    }

    #[tokio::test]
    async fn every_unreadable_secret_is_named_at_once() {
        let store = MemorySecretStore::default();
        let e = Env::resolve(
            lookup(&[
                ("ADO_PAT_SECRET_ARN", "missing"),
                ("WEBHOOK_SECRET_SSM_PARAMETER", "/missing"),
                ("CATALOG_CLIENT_SECRET", "direct"),
                ("CATALOG_CLIENT_SECRET_SECRET_ARN", "also"),
            ]),
            &store,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ADO_PAT") && e.contains("ADO_PAT_SECRET_ARN"),
            "{e}"
        );
        assert!(e.contains("WEBHOOK_SECRET_SSM_PARAMETER"), "{e}");
        assert!(e.contains("set only one of CATALOG_CLIENT_SECRET"), "{e}");
        assert!(!e.contains("direct"), "{e}");
    }

    #[test]
    fn secret_and_settings_problems_are_reported_together_without_repeats() {
        let problems = vec![ConfigError::Secret {
            name: "ADO_PAT",
            variable: "ADO_PAT_SECRET_ARN".into(),
            from: Box::new(SecretSource::secrets_manager("ado-pat")),
            reason: Box::new(secrets::SecretError::store(
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.",
            )),
        }];
        let e = Env::parse_with(&Env::default(), problems, |env| {
            crate::config::Settings::from_env(env)
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ADO_PAT_SECRET_ARN") && e.contains("ADO_ORG_URL"),
            "{e}"
        );
        assert!(!e.contains("missing setting ADO_PAT"), "{e}");
    }

    #[test]
    fn secret_sources_exist_only_for_secret_settings() {
        // A non-secret setting's `_SECRET_ARN` is not a setting, so it is simply not read.
        let env = Env::from_lookup(lookup(&[("ADO_ORG_URL_SECRET_ARN", "x")])).unwrap();
        assert!(!env.is_set("ADO_ORG_URL"));
    }

    #[test]
    fn the_readme_documents_every_setting_and_alias() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n## Settings")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("the README has a Settings section");
        let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
        for setting in SETTINGS {
            let row = rows
                .iter()
                .find(|r| r.starts_with(&format!("| `{}`", setting.name)))
                .unwrap_or_else(|| panic!("no README row for {}", setting.name));
            for alias in setting.aliases {
                assert!(
                    row.contains(alias.name),
                    "{} row lacks {}",
                    setting.name,
                    alias.name
                );
            }
            if setting.secret {
                assert!(
                    row.contains(&format!("`{}{SECRET_ARN_SUFFIX}`", setting.name))
                        && row.contains(&format!("`{}{SSM_PARAMETER_SUFFIX}`", setting.name)),
                    "{} row lacks its secret sources",
                    setting.name
                );
            }
        }
        for row in rows {
            let name = row[3..].split('`').next().unwrap_or_default();
            assert!(
                names::setting(name).is_some(),
                "README row {name} is not a setting"
            );
        }
        for (name, _) in PEER_IGNORED {
            assert!(section.contains(name), "README does not explain {name}");
        }
    }
}
