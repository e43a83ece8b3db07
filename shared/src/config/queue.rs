//! The queue and schedule sections: the SQS FIFO queue (and its dead-letter queue) live changes go
//! through, and how often `serve` runs a full resync.

use std::time::Duration;

use super::{ConfigError, Lookup};

/// `QUEUE_URL` and `DLQ_URL`. Both optional here: `serve` falls back to its local queue, and only the
/// webhook function requires a queue ([`QueueSettings::required_queue_url`]).
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
}

impl QueueSettings {
    pub fn from_env(env: &super::Env) -> Self {
        Self::from_lookup(|k| env.get(k))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = Lookup::new(&get);
        Self {
            queue_url: get.get("QUEUE_URL").map(|u| u.trim().to_owned()),
            dlq_url: get.get("DLQ_URL").map(|u| u.trim().to_owned()),
        }
    }

    /// The queue URL, for a process that cannot run without one.
    pub fn required_queue_url(&self) -> Result<String, ConfigError> {
        self.queue_url.clone().ok_or(ConfigError::Missing {
            name: "QUEUE_URL",
            hint: "the URL of the SQS FIFO queue to send changes to",
        })
    }
}

/// `RESYNC_INTERVAL_SECS`: seconds between `serve`'s full resyncs (the Lambda's schedule is the stack's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncSchedule {
    /// `None`: no scheduled resync (`0`).
    pub interval: Option<Duration>,
}

impl ResyncSchedule {
    pub const DEFAULT_SECS: u64 = 3600;

    pub fn from_env(env: &super::Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env.get(k))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = Lookup::new(&get);
        let secs = match get.get("RESYNC_INTERVAL_SECS") {
            None => Self::DEFAULT_SECS,
            Some(v) => v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                name: "RESYNC_INTERVAL_SECS",
                reason: format!("{v:?} is not a whole number of seconds"),
            })?,
        };
        Ok(Self::every_secs(secs))
    }

    /// `0` is no scheduled resync.
    pub fn every_secs(secs: u64) -> Self {
        Self {
            interval: (secs > 0).then(|| Duration::from_secs(secs)),
        }
    }

    /// Seconds, `0` for none.
    pub fn secs(&self) -> u64 {
        self.interval.map_or(0, |d| d.as_secs())
    }
}
