//! The webhook binary driven through its real Lambda runtime loop with Function URL events.

use std::time::Duration;

use serde_json::Value;
use sim::lambda::{Outcome, RuntimeApi};

const FORGED: &str = include_str!("../../../events/webhook/forged-password.json");
const VALID: &str = include_str!("../../../events/webhook/workitem-updated.json");

#[tokio::test]
async fn the_function_binary_rejects_forgery_and_answers_503_when_the_queue_is_unreachable() {
    let api = RuntimeApi::start().await.unwrap();
    let mut child = api
        .function_command(env!("CARGO_BIN_EXE_webhook"), "webhook")
        .env("WEBHOOK_USERNAME", "ado")
        .env("WEBHOOK_SECRET", "webhook-secret")
        // Nothing listens there: an authenticated delivery cannot be enqueued, a transient failure.
        .env("QUEUE_URL", "http://127.0.0.1:9/000000000000/events.fifo")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_MAX_ATTEMPTS", "1")
        .spawn()
        .unwrap();
    let forged = api
        .invoke(
            serde_json::from_str::<Value>(FORGED).unwrap(),
            Duration::from_secs(60),
        )
        .await;
    let valid = api
        .invoke(
            serde_json::from_str::<Value>(VALID).unwrap(),
            Duration::from_secs(60),
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    match forged {
        Some(Outcome::Response(r)) => assert_eq!(r["statusCode"], 401, "{r}"),
        other => panic!("expected a response, got {other:?}"),
    }
    match valid {
        Some(Outcome::Response(r)) => assert_eq!(r["statusCode"], 503, "{r}"),
        other => panic!("expected a response, got {other:?}"),
    }
}
