//! What became of one delivery ([`WebhookOutcome`]), and the one place it becomes an HTTP answer and
//! metrics ([`respond`]): the webhook function and `serve` both answer through it.
//!
//! Status codes follow Azure DevOps' delivery rules: 408/502/503/504 are retried within minutes, any
//! other non-2xx puts the whole subscription on probation (and eventually disables it), 410 disables
//! it at once.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Unqueueable;
use crate::metrics::{self, Metrics};

/// The domain's answer to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    /// Queued for the processor.
    Accepted {
        event_id: String,
        /// The queue's id of the message.
        message_id: String,
    },
    /// Authenticated and acknowledged, not queued: it can never become a change, and refusing it would
    /// put the subscription on probation for nothing.
    Ignored {
        /// The envelope's `id`, when it has one.
        event_id: Option<String>,
        reason: Unqueueable,
    },
    /// Refused: the delivery is not one we take, now or later.
    Rejected(Rejection),
    /// Not taken now; Azure DevOps delivers it again.
    RetryLater(RetryLater),
}

/// Why a delivery is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Bad or missing credentials. `challenge`: the webhook takes Basic credentials, so the answer
    /// says so (`WWW-Authenticate`, as RFC 9110 asks).
    Unauthorized { challenge: bool },
    /// Over the body size limit.
    TooLarge,
    /// Not a POST.
    MethodNotAllowed,
    /// The client broke off its body.
    IncompleteBody,
    /// An action invocation whose signature was used before (`actions::push`).
    Replayed,
    /// A signed action invocation that names no run or inputs.
    Malformed,
    /// The route is not served here (action invocations without `ACTIONS_WEBHOOK_SECRET`).
    NotFound,
}

/// Why a delivery is to be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryLater {
    /// The queue could not take it now (throttled, unreachable, too slow): a 503, which Azure DevOps
    /// retries within minutes, so a short outage loses nothing.
    QueueUnavailable,
    /// The queue refused the message (a misconfigured queue fails every delivery alike): a 500, which
    /// shows in the subscription's history and in the error alarm; Azure DevOps retries it on probation.
    QueueRejected,
    /// The body did not arrive within the body timeout: a 408, retried within minutes like a 503.
    BodyTimeout,
}

impl WebhookOutcome {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Accepted { .. } | Self::Ignored { .. } => StatusCode::ACCEPTED,
            Self::Rejected(Rejection::Unauthorized { .. }) => StatusCode::UNAUTHORIZED,
            Self::Rejected(Rejection::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Rejected(Rejection::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Rejected(Rejection::IncompleteBody | Rejection::Malformed) => {
                StatusCode::BAD_REQUEST
            }
            Self::Rejected(Rejection::Replayed) => StatusCode::CONFLICT,
            Self::Rejected(Rejection::NotFound) => StatusCode::NOT_FOUND,
            Self::RetryLater(RetryLater::QueueUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RetryLater(RetryLater::QueueRejected) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RetryLater(RetryLater::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A small JSON object; never echoes the payload or a credential. An ignored delivery's `detail`
    /// names the field, never its value: the subscription's history shows it to whoever looks at the
    /// delivery in Azure DevOps.
    pub fn body(&self) -> Value {
        let error = |text: &str| json!({ "error": text });
        match self {
            Self::Accepted {
                event_id,
                message_id,
            } => json!({"status": "queued", "eventId": event_id, "messageId": message_id}),
            Self::Ignored { event_id, reason } => json!({
                "status": "ignored",
                "reason": reason.reason(),
                "detail": reason.to_string(),
                "eventId": event_id
            }),
            Self::Rejected(Rejection::Unauthorized { .. }) => error("unauthorized"),
            Self::Rejected(Rejection::TooLarge) => error("payload too large"),
            Self::Rejected(Rejection::MethodNotAllowed) => error("method not allowed"),
            Self::Rejected(Rejection::IncompleteBody) => error("incomplete body"),
            Self::Rejected(Rejection::Replayed) => error("replayed"),
            Self::Rejected(Rejection::Malformed) => error("not an action invocation"),
            Self::Rejected(Rejection::NotFound) => error("not found"),
            Self::RetryLater(RetryLater::QueueUnavailable) => error("queue unavailable"),
            Self::RetryLater(RetryLater::QueueRejected) => error("queue rejected the message"),
            Self::RetryLater(RetryLater::BodyTimeout) => error("body not received in time"),
        }
    }

    /// The answer: status, JSON body, and the headers the outcome calls for.
    pub fn http(&self) -> Response<String> {
        let mut response = Response::new(self.body().to_string());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            Self::Rejected(Rejection::Unauthorized { challenge: true }) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="ado-sync", charset="UTF-8""#),
                );
            }
            // Azure DevOps only POSTs; anything else learns nothing more than that.
            Self::Rejected(Rejection::MethodNotAllowed) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ => {}
        }
        response
    }

    /// One delivery counts in exactly one of the four webhook metrics. A body that did not arrive in
    /// time counts as refused: the client failed, not the queue.
    pub fn metrics(&self) -> Metrics {
        let counted = match self {
            Self::Accepted { .. } => metrics::EVENTS_ACCEPTED,
            Self::Ignored { .. } => metrics::EVENTS_IGNORED,
            Self::Rejected(_) | Self::RetryLater(RetryLater::BodyTimeout) => {
                metrics::EVENTS_REJECTED
            }
            Self::RetryLater(RetryLater::QueueUnavailable | RetryLater::QueueRejected) => {
                metrics::QUEUE_FAILURES
            }
        };
        let mut m = Metrics::for_function("webhook");
        for name in [
            metrics::EVENTS_ACCEPTED,
            metrics::EVENTS_IGNORED,
            metrics::EVENTS_REJECTED,
            metrics::QUEUE_FAILURES,
        ] {
            m = m.count(name, u64::from(name == counted));
        }
        m
    }
}

/// The edge: emits the outcome's metrics (a no-op outside Lambda) and returns its HTTP answer.
pub fn respond(outcome: &WebhookOutcome) -> Response<String> {
    outcome.metrics().emit();
    outcome.http()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_outcome() -> Vec<WebhookOutcome> {
        vec![
            WebhookOutcome::Accepted {
                event_id: "e".into(),
                message_id: "m".into(),
            },
            WebhookOutcome::Ignored {
                event_id: None,
                reason: Unqueueable::UnsupportedEventType,
            },
            WebhookOutcome::Rejected(Rejection::Unauthorized { challenge: true }),
            WebhookOutcome::Rejected(Rejection::Unauthorized { challenge: false }),
            WebhookOutcome::Rejected(Rejection::TooLarge),
            WebhookOutcome::Rejected(Rejection::MethodNotAllowed),
            WebhookOutcome::Rejected(Rejection::IncompleteBody),
            WebhookOutcome::Rejected(Rejection::Replayed),
            WebhookOutcome::Rejected(Rejection::Malformed),
            WebhookOutcome::Rejected(Rejection::NotFound),
            WebhookOutcome::RetryLater(RetryLater::QueueUnavailable),
            WebhookOutcome::RetryLater(RetryLater::QueueRejected),
            WebhookOutcome::RetryLater(RetryLater::BodyTimeout),
        ]
    }

    #[test]
    fn every_outcome_has_its_status_and_says_what_it_is_in_json() {
        let table: Vec<(u16, Value)> = every_outcome()
            .iter()
            .map(|o| {
                let r = o.http();
                let body: Value = serde_json::from_str(r.body()).unwrap();
                assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
                (r.status().as_u16(), body)
            })
            .collect();
        let said: Vec<(u16, &str)> = table
            .iter()
            .map(|(s, b)| {
                (
                    *s,
                    b.get("status")
                        .or(b.get("error"))
                        .unwrap()
                        .as_str()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(
            said,
            [
                (202, "queued"),
                (202, "ignored"),
                (401, "unauthorized"),
                (401, "unauthorized"),
                (413, "payload too large"),
                (405, "method not allowed"),
                (400, "incomplete body"),
                (409, "replayed"),
                (400, "not an action invocation"),
                (404, "not found"),
                (503, "queue unavailable"),
                (500, "queue rejected the message"),
                (408, "body not received in time"),
            ]
        );
        assert_eq!(
            table[0].1,
            json!({"status": "queued", "eventId": "e", "messageId": "m"})
        );
        assert_eq!(
            table[1].1,
            json!({
                "status": "ignored", "reason": "unsupported-event-type",
                "detail": "event type is not one we handle", "eventId": null
            })
        );
    }

    #[test]
    fn only_a_basic_challenge_and_a_wrong_method_add_headers() {
        for outcome in every_outcome() {
            let r = outcome.http();
            let challenge = r.headers().get(header::WWW_AUTHENTICATE);
            let allow = r.headers().get(header::ALLOW);
            match outcome {
                WebhookOutcome::Rejected(Rejection::Unauthorized { challenge: true }) => {
                    assert!(challenge.unwrap().to_str().unwrap().starts_with("Basic "));
                }
                WebhookOutcome::Rejected(Rejection::MethodNotAllowed) => {
                    assert_eq!(allow.unwrap(), "POST");
                }
                _ => assert!(challenge.is_none() && allow.is_none(), "{outcome:?}"),
            }
        }
    }

    #[test]
    fn every_outcome_counts_in_exactly_one_webhook_metric() {
        let names = [
            metrics::EVENTS_ACCEPTED,
            metrics::EVENTS_IGNORED,
            metrics::EVENTS_REJECTED,
            metrics::QUEUE_FAILURES,
        ];
        let counted: Vec<&str> = every_outcome()
            .iter()
            .map(|o| {
                let doc = o.metrics().to_emf(0);
                let ones: Vec<&str> = names.into_iter().filter(|n| doc[*n] == 1.0).collect();
                assert_eq!(ones.len(), 1, "{o:?}");
                assert!(names.iter().all(|n| doc[*n] == 0.0 || doc[*n] == 1.0));
                ones[0]
            })
            .collect();
        assert_eq!(
            counted,
            [
                "EventsAccepted",
                "EventsIgnored",
                "EventsRejected",
                "EventsRejected",
                "EventsRejected",
                "EventsRejected",
                "EventsRejected",
                "EventsRejected",
                "EventsRejected",
                "EventsRejected",
                "QueueFailures",
                "QueueFailures",
                "EventsRejected",
            ]
        );
    }
}
