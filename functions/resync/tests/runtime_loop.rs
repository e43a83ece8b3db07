//! The resync binary driven through its real Lambda runtime loop, against the simulator.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sim::lambda::{Outcome, RuntimeApi};

const EVENT: &str = include_str!("../../../events/resync/scheduled.json");

#[tokio::test]
async fn the_function_binary_answers_a_scheduled_event_through_the_runtime_api() {
    let org = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        sim::ado::OrgSpec::small(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let mut child = api
        .function_command(env!("CARGO_BIN_EXE_resync"), "resync")
        .envs(org.settings_env())
        .spawn()
        .unwrap();
    let event: Value = serde_json::from_str(EVENT).unwrap();
    let outcome = api.invoke(event, Duration::from_secs(60)).await;
    let _ = child.kill();
    let _ = child.wait();
    match outcome {
        Some(Outcome::Response(report)) => {
            assert_eq!(report["kinds"].as_array().unwrap().len(), 29, "{report}");
            assert!(
                report["kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|k| k["errors"] == 0),
                "{report}"
            );
            assert!(
                !org.catalog
                    .store()
                    .list(Some("azureDevopsWorkItem"))
                    .unwrap()
                    .is_empty()
            );
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn a_missing_setting_stops_the_cold_start_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_resync"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("ADO_PAT", "super-secret-pat")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ADO_ORG_URL"), "{stderr}");
    assert!(!stderr.contains("super-secret-pat"), "{stderr}");
}
