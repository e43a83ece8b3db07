//! The retry policy the remote clients (Azure DevOps, the Port API) share: the backoff between attempts
//! and the waits a server asks for. Each client keeps its own loop, because only the loop knows what a
//! policy cannot: which answers are worth another attempt, the longest wait it accepts, the deadline,
//! pauses shared across requests, and what to log.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::{DateTime, Utc};
use http::HeaderMap;

/// Numbers above this in a wait header are epoch seconds, not a delay (as Ocean reads them): no server
/// asks for a delay of almost three hours, and no epoch is that small.
const EPOCH_FLOOR: f64 = 10_000.0;

/// Exponential backoff with jitter, capped: retry `n` (from 1) waits between `first × 2^(n-1)` and
/// twice that, and never more than `cap`. The random share keeps concurrent requests from retrying in
/// lockstep; it is backon's (0–100 % of the step, added).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap }
    }

    /// The waits of one request's retries, in order. Draw one for every retry, even one that waits
    /// as the server asked, so the step keeps growing with the attempt count.
    pub fn waits(&self) -> Waits {
        // backon caps the step before adding the jitter of up to one step: half the cap keeps every
        // wait under it. The first step is not capped by backon, hence the `min`.
        let step_cap = self.cap / 2;
        Waits {
            steps: ExponentialBuilder::new()
                .with_min_delay(self.first.min(step_cap))
                .with_max_delay(step_cap)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
            cap: self.cap,
        }
    }
}

/// The wait sequence of one request ([`Backoff::waits`]).
#[derive(Debug)]
pub struct Waits {
    steps: ExponentialBackoff,
    cap: Duration,
}

impl Waits {
    /// The wait before the next retry.
    pub fn next_wait(&mut self) -> Duration {
        // Endless (no max times, no total), so `None` cannot come; the cap is the safe answer anyway.
        self.steps.next().unwrap_or(self.cap).min(self.cap)
    }
}

/// How long a server asks us to wait before the next request, if it asks: `Retry-After`, else
/// `X-RateLimit-Reset` once the budget is spent (`X-RateLimit-Remaining` absent or at most 0: both
/// Azure DevOps and Port send the reset time on answers that still have budget left, and that is no
/// reason to wait). A value is seconds, an epoch, or an HTTP or ISO date; a reset already past asks
/// for nothing, a `Retry-After` date already past for no wait. Header names are case-insensitive.
pub fn server_wait(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = text("retry-after").and_then(|v| parse_wait(v, now)) {
        return Some(wait);
    }
    let spent = text("x-ratelimit-remaining")
        .and_then(|v| v.parse::<f64>().ok())
        .is_none_or(|r| r <= 0.0);
    if !spent {
        return None;
    }
    text("x-ratelimit-reset")
        .and_then(|v| parse_wait(v, now))
        .filter(|wait| !wait.is_zero())
}

/// One header value: seconds, an epoch (above [`EPOCH_FLOOR`]), or an HTTP or ISO date.
fn parse_wait(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let until = |t: DateTime<Utc>| (t - now).to_std().unwrap_or(Duration::ZERO);
    if let Ok(n) = value.parse::<f64>() {
        // `inf`, `NaN` and negative numbers parse as f64 but ask for nothing we can wait.
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        if n > EPOCH_FLOOR {
            return Some(until(DateTime::from_timestamp_millis((n * 1000.0) as i64)?));
        }
        return Some(Duration::from_secs_f64(n));
    }
    DateTime::parse_from_rfc2822(value)
        .or_else(|_| DateTime::parse_from_rfc3339(value))
        .ok()
        .map(|t| until(t.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use http::HeaderValue;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
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
            parse_wait(&format!("{epoch}.5"), now()),
            Some(Duration::from_millis(7500)),
            "a fractional epoch keeps its fraction"
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
        for nothing in ["soon", "-1", "inf", "NaN", ""] {
            assert_eq!(parse_wait(nothing, now()), None, "{nothing:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_the_rate_limit_reset() {
        let mut h = headers(&[("x-ratelimit-reset", "9")]);
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(9)));
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(2)));
        // An unreadable Retry-After leaves the reset to answer.
        h.insert("retry-after", HeaderValue::from_static("later"));
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(9)));
    }

    #[test]
    fn a_reset_counts_only_once_the_budget_is_spent_and_while_it_is_ahead() {
        let reset = (now().timestamp() + 10).to_string();
        let spent = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(server_wait(&spent, now()), Some(Duration::from_secs(10)));
        let left = headers(&[
            ("x-ratelimit-remaining", "150"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(server_wait(&left, now()), None);
        let past = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &(now().timestamp() - 10).to_string()),
        ]);
        assert_eq!(server_wait(&past, now()), None);
        // Budget left does not silence an explicit Retry-After.
        let asked = headers(&[("x-ratelimit-remaining", "150"), ("retry-after", "4")]);
        assert_eq!(server_wait(&asked, now()), Some(Duration::from_secs(4)));
    }

    #[test]
    fn a_retry_after_epoch_is_a_time_not_a_delay() {
        let h = headers(&[("retry-after", &(now().timestamp() + 20).to_string())]);
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(20)));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let h = headers(&[("Retry-After", "3")]);
        assert_eq!(server_wait(&h, now()), Some(Duration::from_secs(3)));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut waits = backoff.waits();
            for n in 0..4 {
                let step = 100.0 * 2f64.powi(n);
                let wait = waits.next_wait();
                let ms = wait.as_secs_f64() * 1000.0;
                // backon computes in f32: a microsecond either way is rounding.
                assert!(
                    ms >= step - 0.01 && ms < 2.0 * step + 0.01,
                    "retry {}: {ms} ms",
                    n + 1
                );
                seen.insert((n, wait));
            }
            for _ in 0..30 {
                let wait = waits.next_wait();
                assert!(wait <= Duration::from_secs(3), "{wait:?}");
                assert!(wait >= Duration::from_millis(1499), "{wait:?}");
            }
        }
        assert!(seen.len() > 4 * 10, "the waits are jittered: {seen:?}");
    }

    #[test]
    fn a_first_wait_over_the_cap_is_capped() {
        let mut waits = Backoff::new(Duration::from_secs(60), Duration::from_secs(10)).waits();
        for _ in 0..5 {
            assert!(waits.next_wait() <= Duration::from_secs(10));
        }
    }

    /// Header names and values a test server answers with.
    type Pairs = Vec<(&'static str, String)>;

    /// A server that answers every request 503 with `pairs` as headers; its base URL.
    async fn unavailable(pairs: Pairs) -> String {
        let app = axum::Router::new().fallback(move || {
            let pairs = pairs.clone();
            async move {
                let mut h = axum::http::HeaderMap::new();
                for (name, value) in pairs {
                    h.insert(name, value.parse().unwrap());
                }
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, h, "{}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// The wait each client records on its error for one 503 with `pairs`, Azure DevOps' first.
    async fn waits_read(pairs: Pairs) -> (Option<Duration>, Option<Duration>) {
        use crate::ado::{AdoClient, AdoClientConfig, OrgUrl};
        use crate::catalog::port::{PortClient, PortConfig};
        use secrecy::SecretString;
        let base = unavailable(pairs).await;

        let mut ado = AdoClientConfig::new(
            OrgUrl::parse(&format!("{base}/org")).unwrap(),
            SecretString::from("pat"),
        );
        ado.max_retries = 0;
        let ado = AdoClient::new(ado).unwrap().get("/_apis/projects").await;

        let mut port = PortConfig::new("id", SecretString::from("secret"), "ado", "0.1.0");
        port.base_url = url::Url::parse(&base).unwrap();
        port.max_retries = 0;
        let port = PortClient::new(port).unwrap().integration().await;

        let ado = ado.unwrap_err();
        let port = port.unwrap_err();
        assert!(ado.is_transient() && port.is_transient(), "{ado} / {port}");
        (ado.retry_after(), port.retry_after())
    }

    #[tokio::test]
    async fn both_clients_read_the_same_headers_the_same_way() {
        let epoch = |ahead: i64| (Utc::now().timestamp() + ahead).to_string();
        let date = (Utc::now() + chrono::TimeDelta::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let cases: Vec<(Pairs, Option<u64>)> = vec![
            (vec![("retry-after", "7".into())], Some(7)),
            (vec![("retry-after", date)], Some(30)),
            (
                vec![
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", epoch(20)),
                ],
                Some(20),
            ),
            (vec![("x-ratelimit-reset", "9".into())], Some(9)),
            (
                vec![
                    ("x-ratelimit-remaining", "40".into()),
                    ("x-ratelimit-reset", epoch(20)),
                ],
                None,
            ),
            (vec![], None),
        ];
        for (pairs, expected) in cases {
            let label = format!("{pairs:?}");
            let (ado, port) = waits_read(pairs).await;
            let secs = |w: Option<Duration>| w.map(|w| w.as_secs_f64().round() as u64);
            match expected {
                // A date or an epoch is read against the clock: allow the second the test may take.
                Some(s) => {
                    for got in [secs(ado), secs(port)] {
                        let got = got.unwrap_or_else(|| panic!("{label}: no wait read"));
                        assert!(got + 2 >= s && got <= s, "{label}: {got} s, expected {s} s");
                    }
                }
                None => assert_eq!((ado, port), (None, None), "{label}"),
            }
        }
    }
}
