//! The processor binary driven through its real Lambda runtime loop, against the simulator.

use std::time::Duration;

use serde_json::Value;
use sim::lambda::{Outcome, RuntimeApi};

const UPDATED: &str = include_str!("../../../events/processor/work-item-updated.json");
const POISON: &str = include_str!("../../../events/processor/batch-with-poison.json");

#[tokio::test]
async fn the_function_binary_applies_an_sqs_batch_and_reports_only_the_poison_record() {
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
        .function_command(env!("CARGO_BIN_EXE_processor"), "processor")
        .envs(org.settings_env())
        .spawn()
        .unwrap();
    let updated: Value = serde_json::from_str(UPDATED).unwrap();
    let first = api.invoke(updated.clone(), Duration::from_secs(60)).await;
    let poison: Value = serde_json::from_str(POISON).unwrap();
    let second = api.invoke(poison.clone(), Duration::from_secs(60)).await;
    let _ = child.kill();
    let _ = child.wait();

    match first {
        Some(Outcome::Response(r)) => {
            assert_eq!(r["batchItemFailures"], serde_json::json!([]), "{r}")
        }
        other => panic!("expected a response, got {other:?}"),
    }
    assert!(
        !org.catalog
            .store()
            .list(Some("azureDevopsWorkItem"))
            .unwrap()
            .is_empty(),
        "the update reached the catalog"
    );
    let records = poison["Records"].as_array().unwrap();
    match second {
        Some(Outcome::Response(r)) => {
            let failed: Vec<&Value> = r["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| &f["itemIdentifier"])
                .collect();
            assert!(
                !failed.is_empty() && failed.len() < records.len(),
                "only the poison record (and its later group mates) fail: {r}"
            );
        }
        other => panic!("expected a response, got {other:?}"),
    }
}
