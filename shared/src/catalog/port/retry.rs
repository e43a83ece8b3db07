//! The one retry policy of the Port client: which answers are worth another attempt and how long to
//! wait before it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; doubled on each retry.
    pub base: Duration,
    /// The longest backoff we choose ourselves.
    pub max_backoff: Duration,
    /// The longest wait we accept from `Retry-After` / `x-ratelimit-reset`. Port's rate-limit window is
    /// 5 minutes, so a longer ask is better answered by failing transiently and letting the caller's
    /// schedule come back.
    pub max_server_wait: Duration,
}

impl RetryPolicy {
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_server_wait: Duration::from_secs(60),
        }
    }

    /// What Port's own client retries: rate limiting, request timeouts and gateway failures. A 500 is
    /// not retried: it is usually this request's fault, and Ocean does not retry it either.
    pub fn retries_status(status: u16) -> bool {
        matches!(status, 408 | 429 | 502 | 503 | 504)
    }

    /// The wait before retry number `attempt` (0-based): the server's ask if it gave one, otherwise
    /// exponential backoff with jitter, so concurrent chunks do not retry in lockstep.
    pub fn delay(&self, attempt: u32, server_wait: Option<Duration>) -> Duration {
        if let Some(wait) = server_wait {
            return wait.min(self.max_server_wait);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        exp.mul_f64(0.8 + 0.4 * unit_random())
    }
}

/// The wait a server asks for in `Retry-After` or `x-ratelimit-reset`: seconds, an epoch (any number
/// above 10,000, as Ocean reads it), or an HTTP or ISO date.
pub(crate) fn server_wait(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    ["retry-after", "x-ratelimit-reset"]
        .iter()
        .find_map(|name| {
            headers
                .get(*name)?
                .to_str()
                .ok()
                .and_then(|v| parse_wait(v, now))
        })
}

fn parse_wait(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let until = |t: DateTime<Utc>| (t - now).to_std().unwrap_or(Duration::ZERO);
    if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        if n > 10_000.0 {
            return Some(until(DateTime::from_timestamp(n as i64, 0)?));
        }
        return Some(Duration::from_secs_f64(n));
    }
    DateTime::parse_from_rfc2822(value)
        .or_else(|_| DateTime::parse_from_rfc3339(value))
        .ok()
        .map(|t| until(t.with_timezone(&Utc)))
}

/// A number in [0, 1) from std's randomly keyed hasher: enough for jitter without a dependency.
fn unit_random() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn waits_are_read_as_seconds_epochs_or_dates() {
        assert_eq!(parse_wait("3", now()), Some(Duration::from_secs(3)));
        assert_eq!(parse_wait("0.5", now()), Some(Duration::from_millis(500)));
        let epoch = now().timestamp() + 7;
        assert_eq!(
            parse_wait(&epoch.to_string(), now()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_wait("Wed, 01 Jan 2025 00:00:09 GMT", now()),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            parse_wait("2025-01-01T00:00:04Z", now()),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            parse_wait("2024-01-01T00:00:00Z", now()),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_wait("soon", now()), None);
    }

    #[test]
    fn retry_after_wins_over_the_rate_limit_reset() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("9"));
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(9)));
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(2)));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy::new(5);
        for attempt in 0..3 {
            let nominal = 200.0 * 2f64.powi(attempt as i32);
            let d = p.delay(attempt, None).as_millis() as f64;
            assert!(
                d >= nominal * 0.8 - 1.0 && d <= nominal * 1.2 + 1.0,
                "attempt {attempt}: {d}"
            );
        }
        assert!(p.delay(30, None) <= Duration::from_secs(12));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn only_throttling_timeouts_and_gateway_errors_are_retried() {
        for s in [408, 429, 502, 503, 504] {
            assert!(RetryPolicy::retries_status(s));
        }
        for s in [400, 401, 404, 413, 422, 500] {
            assert!(!RetryPolicy::retries_status(s));
        }
    }
}
