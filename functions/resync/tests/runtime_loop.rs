//! The resync binary driven through its real Lambda runtime loop, against the simulator.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sim::lambda::{Outcome, RuntimeApi};

const EVENT: &str = include_str!("../../../events/resync/scheduled.json");

/// Starts the resync binary with the settings `configure` gives it, sends it one scheduled event through
/// the Runtime API, and stops it.
async fn invoke_once(configure: impl FnOnce(&mut Command) -> &mut Command) -> Option<Outcome> {
    let api = RuntimeApi::start().await.unwrap();
    let mut cmd = api.function_command(env!("CARGO_BIN_EXE_resync"), "resync");
    let mut child = configure(&mut cmd).spawn().unwrap();
    let event: Value = serde_json::from_str(EVENT).unwrap();
    let outcome = api.invoke(event, Duration::from_secs(60)).await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

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
    let outcome = invoke_once(|cmd| cmd.envs(org.settings_env())).await;
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

/// The deployed shape: the peer's variable names, the PAT in Secrets Manager and the catalog secret in
/// SSM, reached through `AWS_ENDPOINT_URL` (which the AWS SDK honours by itself) on moto.
#[tokio::test]
async fn the_cold_start_reads_peer_names_and_secrets_from_secrets_manager_and_ssm() {
    use aws_config::BehaviorVersion;
    use aws_sdk_ssm::config::{Credentials, Region};
    use aws_sdk_ssm::types::ParameterType;

    let endpoint = sim::moto::endpoint();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let unique = format!("resync-{}-{nanos}", std::process::id());
    let secret = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(format!("ado-sync/{unique}"))
        .secret_string(r#"{"pat": "pat-in-secrets-manager"}"#)
        .send()
        .await
        .unwrap();
    let parameter = format!("/ado-sync/{unique}/catalog-secret");
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name(&parameter)
        .value("catalog-secret-in-ssm")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .unwrap();

    let org = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        sim::ado::OrgSpec::small(),
        sim::ado::AdoSimOptions {
            pat: Some("pat-in-secrets-manager".into()),
            ..Default::default()
        },
        sim::catalog::CatalogSimOptions {
            client_id: Some("peer-client".into()),
            client_secret: Some("catalog-secret-in-ssm".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let outcome = invoke_once(|cmd| {
        cmd.env(
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
            org.ado_org_url(),
        )
        .env("OCEAN__PORT__BASE_URL", org.catalog_base_url())
        .env("OCEAN__PORT__CLIENT_ID", "peer-client")
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .env(
            "ADO_PAT_SECRET_ARN",
            format!("{}#pat", secret.arn().unwrap()),
        )
        .env("CATALOG_CLIENT_SECRET_SSM_PARAMETER", &parameter)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
    })
    .await;
    match outcome {
        Some(Outcome::Response(report)) => {
            assert!(
                report["kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|k| k["errors"] == 0),
                "{report}"
            );
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn a_missing_secret_stops_the_cold_start_naming_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_resync"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("ADO_ORG_URL", "https://dev.azure.com/contoso")
        .env("ADO_PAT_SSM_PARAMETER", "/ado-sync/does-not-exist")
        .env("CATALOG_DB", "/nonexistent/x.db")
        .env("AWS_ENDPOINT_URL", sim::moto::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ADO_PAT") && stderr.contains("ADO_PAT_SSM_PARAMETER"),
        "{stderr}"
    );
    assert!(stderr.contains("ParameterNotFound"), "{stderr}");
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
