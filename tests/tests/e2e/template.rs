//! `template.yaml` against what the code expects of it. `sam validate --lint` and cfn-lint (scripts/sam.sh)
//! miss a misspelt `ReportBatchItemFailures`, a FIFO batch over 10 or a wrong binary name; these don't.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The template as data. CloudFormation's short-form tags (`!Ref X`, `!GetAtt Y.Arn`) read as their
/// plain value (`X`, `Y.Arn`).
fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(k, r)| (k.as_str(), r))
        .collect()
}

/// The `[[bin]]` name of a function crate.
fn bin_name(function: &str) -> String {
    let manifest =
        std::fs::read_to_string(root().join("functions").join(function).join("Cargo.toml"))
            .unwrap();
    let after = manifest.split("[[bin]]").nth(1).unwrap();
    let line = after
        .lines()
        .find(|l| l.trim_start().starts_with("name"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

#[test]
fn the_three_functions_build_their_own_binary_for_arm64_on_al2023() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"][0], "arm64");
    assert_eq!(globals["Handler"], "bootstrap");
    let functions = resources_of_type(&t, "AWS::Serverless::Function");
    let mut binaries = BTreeSet::new();
    for (name, function) in &functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}"
        );
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        binaries.insert(binary.to_owned());
        assert_eq!(
            function["Properties"]["LoggingConfig"]["LogFormat"], "JSON",
            "{name}"
        );
    }
    let expected: BTreeSet<String> = ["webhook", "processor", "resync"]
        .iter()
        .map(|f| bin_name(f))
        .collect();
    assert_eq!(functions.len(), 3);
    assert_eq!(binaries, expected);
}

#[test]
fn the_queue_is_fifo_with_room_for_retries_and_a_dead_letter_queue() {
    let t = template();
    let queue = &t["Resources"]["EventsQueue"]["Properties"];
    let dlq = &t["Resources"]["EventsDeadLetterQueue"]["Properties"];
    assert_eq!(queue["FifoQueue"], true);
    assert_eq!(dlq["FifoQueue"], true);
    assert_eq!(queue["MaximumMessageSize"], 1_048_576);
    assert_eq!(
        &queue["RedrivePolicy"]["deadLetterTargetArn"],
        &Value::from("EventsDeadLetterQueue.Arn")
    );
    let processor = &t["Resources"]["ProcessorFunction"]["Properties"];
    let timeout = processor["Timeout"].as_u64().unwrap();
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout,
        "Lambda asks for a visibility timeout of at least 6x the function timeout"
    );
    let source = &processor["Events"]["Queue"]["Properties"];
    assert_eq!(
        source["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    assert!(
        source["BatchSize"].as_u64().unwrap() <= 10,
        "FIFO sources take at most 10"
    );
}

#[test]
fn the_resync_runs_on_a_scheduler_schedule_from_a_parameter() {
    let t = template();
    let event = &t["Resources"]["ResyncFunction"]["Properties"]["Events"]["Schedule"];
    assert_eq!(event["Type"], "ScheduleV2");
    assert_eq!(
        &event["Properties"]["ScheduleExpression"],
        &Value::from("ResyncSchedule")
    );
    let timeout = t["Resources"]["ResyncFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    assert!(timeout <= 900, "Lambda's ceiling is 15 minutes");
}

#[test]
fn no_secret_value_is_a_parameter_or_an_environment_variable() {
    let t = template();
    for (name, p) in t["Parameters"].as_object().unwrap() {
        assert!(
            p.get("NoEcho").is_none(),
            "{name:?}: secrets are passed by reference"
        );
    }
    use shared::config::names::{SECRET_ARN_SUFFIX, SETTINGS, SSM_PARAMETER_SUFFIX, setting};
    let secrets: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.secret)
        .map(|s| s.name)
        .collect();
    assert!(secrets.contains(&"ADO_PAT") && secrets.contains(&"CATALOG_CLIENT_SECRET"));
    let mut by_reference = 0;
    for (name, function) in resources_of_type(&t, "AWS::Serverless::Function") {
        let vars = function["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap();
        for key in vars.keys() {
            let key = key.as_str();
            assert!(!secrets.contains(&key), "{name} sets {key} directly");
            // Every secret reference names a secret setting the functions actually read.
            if let Some(base) = key
                .strip_suffix(SECRET_ARN_SUFFIX)
                .or_else(|| key.strip_suffix(SSM_PARAMETER_SUFFIX))
            {
                assert!(
                    setting(base).is_some_and(|s| s.secret),
                    "{name} sets {key}, but {base} is not a secret setting the code reads"
                );
                by_reference += 1;
            }
        }
    }
    assert!(
        by_reference >= 6,
        "the functions get their secrets by reference"
    );
}

#[test]
fn every_alarm_on_our_namespace_watches_a_metric_the_functions_emit() {
    let t = template();
    let mut watched = 0;
    for (name, alarm) in resources_of_type(&t, "AWS::CloudWatch::Alarm") {
        let p = &alarm["Properties"];
        if p["Namespace"] == shared::metrics::NAMESPACE {
            let metric = p["MetricName"].as_str().unwrap();
            assert!(
                shared::metrics::ALL.contains(&metric),
                "{name} watches {metric}, which nothing emits"
            );
            assert_eq!(p["Dimensions"][0]["Name"], shared::metrics::DIMENSION);
            watched += 1;
        }
    }
    assert!(watched >= 4);
}

#[test]
fn the_webhook_url_is_an_output_for_either_endpoint() {
    let t = template();
    let allowed = &t["Parameters"]["WebhookEndpoint"]["AllowedValues"];
    assert_eq!(
        allowed,
        &serde_saphyr::from_str::<Value>("[FunctionUrl, HttpApi]").unwrap()
    );
    let url = &t["Outputs"]["WebhookUrl"]["Value"];
    assert_eq!(url[0], "UseFunctionUrl");
    for output in [
        "EventsQueueUrl",
        "EventsDeadLetterQueueUrl",
        "WebhookFunctionName",
        "ProcessorFunctionName",
        "ResyncFunctionName",
    ] {
        assert!(t["Outputs"].get(output).is_some(), "{output}");
    }
}

#[test]
fn the_action_claimer_schedule_sends_the_event_the_resync_function_claims_on() {
    let t = template();
    let resync = &t["Resources"]["ResyncFunction"]["Properties"];
    let claim = &resync["Events"]["ClaimActions"]["Properties"];
    assert_eq!(claim["ScheduleExpression"], "rate(1 minute)");
    let input: Value = serde_json::from_str(claim["Input"].as_str().unwrap()).unwrap();
    assert!(resync_function::is_claim(&input), "{input}");
    let scheduled: Value = serde_json::from_str(crate::helpers::SCHEDULED_EVENT).unwrap();
    assert!(!resync_function::is_claim(&scheduled));
    // Both the functions that act on actions read the one parameter.
    for function in ["ProcessorFunction", "ResyncFunction"] {
        let vars = &t["Resources"][function]["Properties"]["Environment"]["Variables"];
        assert_eq!(vars["ACTIONS_ENABLED"], "ActionsEnabled", "{function}");
    }
    let webhook = &t["Resources"]["WebhookFunction"]["Properties"]["Environment"]["Variables"];
    assert!(webhook.get("ACTIONS_WEBHOOK_SECRET_SECRET_ARN").is_some());
    assert_eq!(
        t["Resources"]["WebhookHttpApiActionsRoute"]["Properties"]["RouteKey"],
        "POST /actions"
    );
}
