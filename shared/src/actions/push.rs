//! The push model: the catalog POSTs a webhook action invocation to `POST /actions`, signed with
//! `x-port-timestamp` (seconds) and `x-port-signature: v1,<base64 HMAC-SHA256(secret,
//! "{timestamp}.{raw body}")>`. The signature is checked in constant time before the body is parsed;
//! a timestamp more than five minutes away is stale, and a signature seen before within those five
//! minutes is a replay. What passes is queued as an [`ActionJob`], like a claimed run.
//!
//! Replays are caught in this process by the seen-signature set; across Lambda instances the queue's
//! deduplication (by run id, five minutes, the same window) drops the copy, and the executor's ledger
//! (the action run's external id) stops any later one from starting a second pipeline.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;

use super::{ActionJob, Invocation, RunId, TRIGGER_PIPELINE};
use crate::queue::{Queue, QueueError};
use crate::webhook::{Rejection, RetryLater, WebhookOutcome};

/// How far a timestamp may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 300;
/// Signatures remembered for replay detection; more than five minutes of any real invocation rate.
const SEEN_CAP: usize = 10_000;

/// Verifies webhook invocations with one secret and remembers the signatures it accepted.
pub struct PushVerifier {
    secret: SecretString,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    order: VecDeque<(i64, [u8; 32])>,
    set: HashSet<[u8; 32]>,
}

impl std::fmt::Debug for PushVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushVerifier").finish_non_exhaustive()
    }
}

/// Why an invocation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushRefusal {
    #[error("no x-port-signature or x-port-timestamp header")]
    Unsigned,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the timestamp is more than five minutes away")]
    Stale,
    #[error("this signature was already used")]
    Replayed,
}

impl PushVerifier {
    pub fn new(secret: SecretString) -> Self {
        Self {
            secret,
            seen: Mutex::default(),
        }
    }

    /// Checks the signature over the raw body; `now` is Unix seconds.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), PushRefusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(signatures)) =
            (header("x-port-timestamp"), header("x-port-signature"))
        else {
            return Err(PushRefusal::Unsigned);
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        // Several `v1,<sig>` may be sent (during a secret rotation), separated by spaces.
        let matched = signatures
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .any(|given| constant_time_eq(&given, &expected));
        if !matched {
            return Err(PushRefusal::BadSignature);
        }
        // Only a genuine signature's timestamp is worth reading.
        let ts: i64 = timestamp.trim().parse().map_err(|_| PushRefusal::Stale)?;
        if (now - ts).abs() > MAX_SKEW_SECS {
            return Err(PushRefusal::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((at, sig)) = seen.order.front().copied() {
            if now - at <= MAX_SKEW_SECS && seen.order.len() < SEEN_CAP {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&sig);
        }
        if !seen.set.insert(expected) {
            return Err(PushRefusal::Replayed);
        }
        seen.order.push_back((now, expected));
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Why a signed body is not an action invocation.
#[derive(Debug, thiserror::Error)]
pub enum InvalidInvocation {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the invocation names no run (run.id or context.runId)")]
    NoRun,
    #[error(transparent)]
    RunId(#[from] super::InvalidRunId),
    #[error("the invocation carries no inputs")]
    NoInputs,
}

/// The job an invocation body asks for: the run id from `run.id` (or `context.runId`, `runId`), the
/// inputs from the integration payload (or `inputs`, `properties`), the type from
/// `payload.integrationActionType` (default `trigger_pipeline`).
pub fn job_of(body: &Value) -> Result<ActionJob, InvalidInvocation> {
    let run_id = ["/run/id", "/context/runId", "/runId"]
        .iter()
        .find_map(|p| body.pointer(p).and_then(Value::as_str))
        .ok_or(InvalidInvocation::NoRun)?;
    let run_id = RunId::parse(run_id)?;
    let inputs = [
        "/payload/integrationActionExecutionProperties",
        "/inputs",
        "/properties",
    ]
    .iter()
    .find_map(|p| body.pointer(p).filter(|v| v.is_object()))
    .cloned()
    .ok_or(InvalidInvocation::NoInputs)?;
    let action_type = body
        .pointer("/payload/integrationActionType")
        .and_then(Value::as_str)
        .unwrap_or(TRIGGER_PIPELINE)
        .to_owned();
    Ok(ActionJob {
        run_id,
        action_type,
        inputs,
        via: Invocation::Webhook,
    })
}

/// Handles one invocation: signature first (nothing is parsed for a stranger), then the body, then the
/// queue. The answer goes through the webhook's one [`crate::webhook::respond`].
pub async fn accept(
    verifier: Option<&PushVerifier>,
    queue: &dyn Queue,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> WebhookOutcome {
    let Some(verifier) = verifier else {
        return WebhookOutcome::Rejected(Rejection::NotFound);
    };
    if let Err(refusal) = verifier.verify(headers, body, now) {
        tracing::warn!(reason = %refusal, "action invocation refused");
        return WebhookOutcome::Rejected(match refusal {
            PushRefusal::Replayed => Rejection::Replayed,
            _ => Rejection::Unauthorized { challenge: false },
        });
    }
    let job = match serde_json::from_slice::<Value>(body)
        .map_err(InvalidInvocation::from)
        .and_then(|v| job_of(&v))
    {
        Ok(job) => job,
        Err(reason) => {
            tracing::warn!(%reason, "action invocation unreadable");
            return WebhookOutcome::Rejected(Rejection::Malformed);
        }
    };
    let message = job.into_message();
    match queue.send(&message).await {
        Ok(message_id) => {
            tracing::info!(event_id = %message.event_id, message_id = %message_id, "action invocation queued");
            WebhookOutcome::Accepted {
                event_id: message.event_id,
                message_id,
            }
        }
        Err(e @ QueueError::Transient(_)) => {
            tracing::warn!(error = %e, "queue unavailable; the invocation is refused for a retry");
            WebhookOutcome::RetryLater(RetryLater::QueueUnavailable)
        }
        Err(e @ QueueError::Invalid(_)) => {
            tracing::error!(error = %e, "queue rejected the action job");
            WebhookOutcome::RetryLater(RetryLater::QueueRejected)
        }
    }
}

/// `v1,<base64 HMAC-SHA256(secret, "{timestamp}.{body}")>`, as the catalog signs.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::queue::memory::MemoryQueue;

    const NOW: i64 = 1_764_900_000;

    fn signed(secret: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-port-timestamp", ts.to_string().parse().unwrap());
        h.insert(
            "x-port-signature",
            signature(secret, &ts.to_string(), body).parse().unwrap(),
        );
        h
    }

    fn verifier() -> PushVerifier {
        PushVerifier::new(SecretString::from("port-secret"))
    }

    fn invocation() -> Vec<u8> {
        json!({"action": {"identifier": "trigger_pipeline"}, "run": {"id": "r_abc"},
               "payload": {"integrationActionType": "trigger_pipeline",
                           "integrationActionExecutionProperties": {"project": "p", "pipelineId": 1}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_signature_is_the_catalog_s_hmac_over_timestamp_and_body() {
        // python3: base64.b64encode(hmac.new(b"secret", b"123.{}", hashlib.sha256).digest())
        assert_eq!(
            signature("secret", "123", b"{}"),
            "v1,RGjF4wTKEHM1rimC12T98wQhQXXH3DrQaSGEjSdau5I="
        );
    }

    #[tokio::test]
    async fn a_signed_invocation_is_queued_as_a_job_for_its_run() {
        let queue = MemoryQueue::new();
        let body = invocation();
        let v = verifier();
        let outcome = accept(
            Some(&v),
            &queue,
            &signed("port-secret", NOW, &body),
            &body,
            NOW,
        )
        .await;
        assert!(
            matches!(outcome, WebhookOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        let crate::queue::Change::Action(job) = &sent[0].change else {
            panic!("{:?}", sent[0].change)
        };
        assert_eq!(job.run_id.as_str(), "r_abc");
        assert_eq!(job.inputs["pipelineId"], 1);
        assert_eq!(job.via, Invocation::Webhook);
    }

    #[tokio::test]
    async fn forged_stale_replayed_and_unsigned_invocations_queue_nothing() {
        let queue = MemoryQueue::new();
        let body = invocation();
        let v = verifier();
        let forged = accept(Some(&v), &queue, &signed("other", NOW, &body), &body, NOW).await;
        assert_eq!(forged.status(), http::StatusCode::UNAUTHORIZED);
        let stale = NOW - MAX_SKEW_SECS - 1;
        let old = accept(
            Some(&v),
            &queue,
            &signed("port-secret", stale, &body),
            &body,
            NOW,
        )
        .await;
        assert_eq!(old.status(), http::StatusCode::UNAUTHORIZED);
        let tampered = accept(
            Some(&v),
            &queue,
            &signed("port-secret", NOW, &body),
            b"{\"run\":{\"id\":\"r_other\"}}",
            NOW,
        )
        .await;
        assert_eq!(tampered.status(), http::StatusCode::UNAUTHORIZED);
        let unsigned = accept(Some(&v), &queue, &HeaderMap::new(), &body, NOW).await;
        assert_eq!(unsigned.status(), http::StatusCode::UNAUTHORIZED);
        assert!(queue.sent().is_empty());

        let headers = signed("port-secret", NOW, &body);
        let first = accept(Some(&v), &queue, &headers, &body, NOW).await;
        assert!(matches!(first, WebhookOutcome::Accepted { .. }));
        let replay = accept(Some(&v), &queue, &headers, &body, NOW + 10).await;
        assert_eq!(replay.status(), http::StatusCode::CONFLICT);
        assert_eq!(queue.sent().len(), 1);
    }

    #[tokio::test]
    async fn without_a_secret_the_endpoint_does_not_exist_and_bad_bodies_are_refused() {
        let queue = MemoryQueue::new();
        let body = invocation();
        let closed = accept(None, &queue, &signed("x", NOW, &body), &body, NOW).await;
        assert_eq!(closed.status(), http::StatusCode::NOT_FOUND);
        let v = verifier();
        let bad = br#"{"run": {"id": "../admin"}, "inputs": {}}"#;
        let outcome = accept(Some(&v), &queue, &signed("port-secret", NOW, bad), bad, NOW).await;
        assert_eq!(outcome.status(), http::StatusCode::BAD_REQUEST);
        assert!(queue.sent().is_empty());
    }
}
