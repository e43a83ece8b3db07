//! The webhook function: one Azure DevOps service-hook delivery per invocation (a Function URL or
//! HTTP API request, payload format 2.0), or one signed action invocation at `/actions`, answered as
//! the shared use case's outcome says
//! ([`shared::webhook::respond`]).

use base64::Engine;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::http::{HeaderMap, Method};
use lambda_http::{Body, Request, Response};
use shared::queue::Queue;
use shared::webhook::{Rejection, WebhookOutcome, WebhookSettings, accept_at, respond};

/// One delivery as the Lambda runtime hands it over: the Function URL / HTTP API event (payload format
/// 2.0), read straight into its type. lambda_http's `Request` would first go through an untagged enum
/// of every event source, which buffers the whole event: about half the CPU of a delivery.
pub async fn handle_event(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    event: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    let body = match event.body {
        None => Vec::new(),
        // Lambda always encodes correctly; text that is not base64 after all stays as it is (and is
        // then not JSON, so it is acknowledged as malformed after authentication).
        Some(text) if event.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap_or_else(|_| text.into_bytes()),
        Some(text) => text.into_bytes(),
    };
    let method = &event.request_context.http.method;
    let path = event.raw_path.as_deref().unwrap_or("/");
    let (parts, body) = answer(settings, queue, method, path, &event.headers, &body)
        .await
        .into_parts();
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(parts.status.as_u16());
    response.headers = parts.headers;
    response.body = Some(body);
    response
}

/// Authenticates, classifies and queues one delivery. lambda_http has already decoded a base64 body
/// into bytes, so text and binary bodies are read alike.
pub async fn handle(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    request: Request,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    answer(
        settings,
        queue,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        body.as_ref(),
    )
    .await
}

async fn answer(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    // Azure DevOps and the catalog only POST; anything else learns nothing more.
    let outcome = if method == Method::POST {
        accept_at(settings, queue, path, headers, body).await
    } else {
        WebhookOutcome::Rejected(Rejection::MethodNotAllowed)
    };
    respond(&outcome).map(Body::Text)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use lambda_http::http::{StatusCode, header};
    use serde_json::Value;
    use shared::queue::Change;
    use shared::queue::memory::MemoryQueue;

    use super::*;

    /// The credentials the sample envelopes carry (see events/webhook/README.md).
    fn settings() -> WebhookSettings {
        WebhookSettings::from_lookup(|k| match k {
            "WEBHOOK_USERNAME" => Some("ado".into()),
            "WEBHOOK_SECRET" => Some("webhook-secret".into()),
            _ => None,
        })
        .unwrap()
    }

    fn request(scenario: &str) -> Request {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../events/webhook")
            .join(format!("{scenario}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{scenario}: {e}"))
    }

    async fn call(scenario: &str, queue: &MemoryQueue) -> (StatusCode, Value, Response<Body>) {
        let response = handle(&settings(), queue, request(scenario)).await;
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        (response.status(), body, response)
    }

    #[tokio::test]
    async fn a_work_item_update_is_queued_under_the_work_item_id() {
        let queue = MemoryQueue::new();
        let (status, body, response) = call("workitem-updated", &queue).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["status"], "queued");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        assert!(matches!(
            sent[0].change,
            Change::WorkItem {
                id: 5,
                deleted: false,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_base64_encoded_push_is_decoded_and_queued() {
        let queue = MemoryQueue::new();
        let (status, _, _) = call("git-push-base64", &queue).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        assert!(
            matches!(&sent[0].change, Change::Push { ref_updates, .. } if ref_updates.len() == 2)
        );
    }

    #[tokio::test]
    async fn forged_or_missing_credentials_get_401_with_a_challenge() {
        let queue = MemoryQueue::new();
        for scenario in ["forged-password", "missing-credentials"] {
            let (status, body, response) = call(scenario, &queue).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{scenario}");
            assert_eq!(body["error"], "unauthorized");
            assert!(
                response.headers()[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
        }
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn malformed_or_unknown_deliveries_are_acknowledged_without_queueing() {
        let queue = MemoryQueue::new();
        for (scenario, reason) in [
            ("malformed-json", "malformed-json"),
            ("unknown-event-type", "unsupported-event-type"),
        ] {
            let (status, body, _) = call(scenario, &queue).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{scenario}");
            assert_eq!(body["status"], "ignored");
            assert_eq!(body["reason"], reason);
        }
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn a_queue_outage_asks_azure_devops_to_retry() {
        let queue = MemoryQueue::new();
        queue.fail(true);
        let (status, _, _) = call("workitem-updated", &queue).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    /// The typed outcome the shared use case gives a sample's request.
    async fn outcome(scenario: &str, queue: &MemoryQueue) -> WebhookOutcome {
        let (parts, body) = request(scenario).into_parts();
        shared::webhook::accept(&settings(), queue, &parts.headers, body.as_ref()).await
    }

    #[tokio::test]
    async fn every_delivery_counts_in_exactly_one_metric() {
        let queue = MemoryQueue::new();
        let names = [
            "EventsAccepted",
            "EventsIgnored",
            "EventsRejected",
            "QueueFailures",
        ];
        let mut cases = vec![
            ("workitem-updated", "EventsAccepted"),
            ("unknown-event-type", "EventsIgnored"),
            ("forged-password", "EventsRejected"),
        ];
        cases.push(("workitem-updated", "QueueFailures"));
        for (i, (scenario, metric)) in cases.into_iter().enumerate() {
            if i == 3 {
                queue.fail(true);
            }
            let doc = outcome(scenario, &queue).await.metrics().to_emf(0);
            for name in names {
                let expected = if name == metric { 1.0 } else { 0.0 };
                assert_eq!(doc[name], expected, "{scenario}: {name}");
            }
        }
    }

    /// Every envelope in events/webhook/ and the answer it gets (the table in its README).
    const SCENARIOS: &[(&str, u16, &str)] = &[
        ("workitem-updated", 202, "queued"),
        ("http-api-workitem-updated", 202, "queued"),
        ("git-push-base64", 202, "queued"),
        ("git-pullrequest-updated", 202, "queued"),
        ("pipeline-run-state-changed", 202, "queued"),
        ("forged-password", 401, "unauthorized"),
        ("missing-credentials", 401, "unauthorized"),
        ("malformed-json", 202, "ignored"),
        ("unknown-event-type", 202, "ignored"),
        ("hostile-project-id", 202, "ignored"),
        ("get-request", 405, "method not allowed"),
    ];

    #[tokio::test]
    async fn every_sample_envelope_gets_the_answer_its_readme_promises() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/webhook");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|f| f.strip_suffix(".json").map(str::to_owned))
            .collect();
        files.sort();
        let mut listed: Vec<String> = SCENARIOS.iter().map(|s| s.0.to_owned()).collect();
        listed.sort();
        assert_eq!(
            files, listed,
            "a sample without an expected answer, or the reverse"
        );
        for (scenario, status, word) in SCENARIOS {
            let queue = MemoryQueue::new();
            let (got, body, _) = call(scenario, &queue).await;
            assert_eq!(got.as_u16(), *status, "{scenario}");
            let said = body.get("status").or(body.get("error")).unwrap();
            assert_eq!(said, word, "{scenario}");
            assert_eq!(
                queue.sent().len(),
                usize::from(*word == "queued"),
                "{scenario}"
            );
        }
    }

    #[tokio::test]
    async fn the_typed_event_path_answers_every_sample_exactly_like_lambda_http() {
        for (scenario, _, _) in SCENARIOS {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../events/webhook")
                .join(format!("{scenario}.json"));
            let text = std::fs::read_to_string(&path).unwrap();
            let event: ApiGatewayV2httpRequest = serde_json::from_str(&text).unwrap();
            let (typed_queue, http_queue) = (MemoryQueue::new(), MemoryQueue::new());
            let typed = handle_event(&settings(), &typed_queue, event).await;
            let (status, body, response) = call(scenario, &http_queue).await;
            assert_eq!(typed.status_code, i64::from(status.as_u16()), "{scenario}");
            let typed_body: Value = match &typed.body {
                Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
                other => panic!("{scenario}: {other:?}"),
            };
            // The message id is the queue's counter; both queues start at the same one.
            assert_eq!(typed_body, body, "{scenario}");
            assert_eq!(&typed.headers, response.headers(), "{scenario}");
            assert_eq!(
                typed_queue.sent().len(),
                http_queue.sent().len(),
                "{scenario}"
            );
            assert!(!typed.is_base64_encoded);
        }
    }

    #[tokio::test]
    async fn anything_but_post_is_refused_without_touching_the_queue() {
        let queue = MemoryQueue::new();
        let mut request = request("workitem-updated");
        *request.method_mut() = Method::GET;
        let response = handle(&settings(), &queue, request).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        assert!(queue.sent().is_empty());
    }

    /// A webhook action invocation at `/actions`, signed as the catalog signs.
    fn invocation(path: &str, secret: &str) -> Request {
        let body = serde_json::json!({"run": {"id": "r_push1"},
            "payload": {"integrationActionType": "trigger_pipeline",
                        "integrationActionExecutionProperties": {"project": "p", "pipelineId": 3}}})
        .to_string();
        let ts = chrono::Utc::now().timestamp().to_string();
        let signature = shared::actions::push::signature(secret, &ts, body.as_bytes());
        lambda_http::http::Request::builder()
            .method(Method::POST)
            .uri(format!("https://x.lambda-url.eu-west-1.on.aws{path}"))
            .header("x-port-timestamp", ts)
            .header("x-port-signature", signature)
            .body(Body::Text(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_signed_action_invocation_is_queued_and_a_forged_one_is_refused() {
        let settings = WebhookSettings::from_lookup(|k| match k {
            "WEBHOOK_SECRET" => Some("webhook-secret".into()),
            "ACTIONS_WEBHOOK_SECRET" => Some("port-secret".into()),
            _ => None,
        })
        .unwrap();
        let queue = MemoryQueue::new();
        let forged = handle(&settings, &queue, invocation("/actions", "guess")).await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        assert!(queue.sent().is_empty());
        let signed = handle(&settings, &queue, invocation("/actions", "port-secret")).await;
        assert_eq!(signed.status(), StatusCode::ACCEPTED);
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        assert!(matches!(&sent[0].change, Change::Action(job) if job.run_id.as_str() == "r_push1"));
        // Without the secret the route does not exist.
        let closed = handle(
            &super::tests::settings(),
            &queue,
            invocation("/actions", "port-secret"),
        )
        .await;
        assert_eq!(closed.status(), StatusCode::NOT_FOUND);
    }
}
