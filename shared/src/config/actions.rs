//! The actions section: whether this installation executes the catalog's self-service actions, the
//! secret the catalog signs webhook invocations with, and the bounds of a run's life.

use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Lookup};

/// `ACTIONS_ENABLED`, `ACTIONS_WEBHOOK_SECRET`, `ACTIONS_RUN_TIMEOUT_SECS`, `ACTIONS_CLAIM_SECS`.
#[derive(Clone)]
pub struct ActionSettings {
    /// Claim pending runs (pull model) and report pipeline completions back. Off by default, as the
    /// peer's `actionsProcessingEnabled`: a completed pipeline run costs one catalog lookup when on.
    pub enabled: bool,
    /// The secret of `x-port-signature` on webhook invocations (`POST /actions`); `None` leaves the
    /// push endpoint closed (404).
    pub webhook_secret: Option<SecretString>,
    /// A started pipeline run that has not completed after this long fails its action run.
    pub run_timeout: Duration,
    /// How long one claimer invocation keeps claiming (the schedule starts one a minute).
    pub claim_window: Duration,
}

impl std::fmt::Debug for ActionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSettings")
            .field("enabled", &self.enabled)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("run_timeout", &self.run_timeout)
            .field("claim_window", &self.claim_window)
            .finish()
    }
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            webhook_secret: None,
            run_timeout: Duration::from_secs(Self::DEFAULT_RUN_TIMEOUT_SECS),
            claim_window: Duration::from_secs(Self::DEFAULT_CLAIM_SECS),
        }
    }
}

impl ActionSettings {
    pub const DEFAULT_RUN_TIMEOUT_SECS: u64 = 24 * 3600;
    pub const DEFAULT_CLAIM_SECS: u64 = 30;

    pub(crate) fn parse(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let enabled = get.bool("ACTIONS_ENABLED", false);
        // A run must be able to outlive a minute; a week is longer than any pipeline Azure DevOps runs.
        let timeout = get.num("ACTIONS_RUN_TIMEOUT_SECS", 60, 7 * 24 * 3600);
        // Within the one-minute schedule, leaving room for the last claim's work.
        let claim = get.num("ACTIONS_CLAIM_SECS", 0, 50);
        let (enabled, (timeout, claim)) =
            ConfigError::both(enabled, ConfigError::both(timeout, claim))?;
        Ok(Self {
            enabled,
            webhook_secret: get.get("ACTIONS_WEBHOOK_SECRET").map(SecretString::from),
            run_timeout: Duration::from_secs(timeout.unwrap_or(Self::DEFAULT_RUN_TIMEOUT_SECS)),
            claim_window: Duration::from_secs(claim.unwrap_or(Self::DEFAULT_CLAIM_SECS)),
        })
    }

    /// The section alone (the webhook function reads only this besides its own settings).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(Lookup::new(&get))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ActionSettings, ConfigError> {
        ActionSettings::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn actions_are_off_with_a_day_to_complete_by_default() {
        let s = parse(&[]).unwrap();
        assert!(!s.enabled);
        assert!(s.webhook_secret.is_none());
        assert_eq!(s.run_timeout, Duration::from_secs(86_400));
        assert_eq!(s.claim_window, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_named_together_and_the_secret_never_prints() {
        let e = parse(&[
            ("ACTIONS_ENABLED", "maybe"),
            ("ACTIONS_RUN_TIMEOUT_SECS", "5"),
            ("ACTIONS_CLAIM_SECS", "900"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "ACTIONS_ENABLED",
            "ACTIONS_RUN_TIMEOUT_SECS",
            "ACTIONS_CLAIM_SECS",
        ] {
            assert!(e.contains(name), "{e}");
        }
        let s = parse(&[
            ("ACTIONS_ENABLED", "true"),
            ("ACTIONS_WEBHOOK_SECRET", "s3cr3t-value"),
        ])
        .unwrap();
        assert!(s.enabled);
        assert!(!format!("{s:?}").contains("s3cr3t-value"));
    }
}
