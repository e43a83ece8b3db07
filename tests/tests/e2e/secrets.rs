//! Secret settings read at cold start from Secrets Manager and SSM Parameter Store, on moto.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ssm::types::ParameterType;
use secrecy::ExposeSecret;
use shared::config::secrets::AwsSecretStore;
use shared::config::{CatalogTarget, Env, Settings};

use crate::moto;

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&str, String> = vars.into_iter().collect();
    move |k| map.get(k).cloned()
}

#[tokio::test]
async fn secret_settings_resolve_from_secrets_manager_and_a_secure_string_parameter() {
    let config = moto::aws_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let ssm = aws_sdk_ssm::Client::new(&config);
    let json_secret = secrets
        .create_secret()
        .name(unique("ado-sync/ado"))
        .secret_string(r#"{"pat": "pat-from-secrets-manager", "other": "x"}"#)
        .send()
        .await
        .expect("secret created");
    let client_id = unique("ado-sync/catalog-client-id");
    secrets
        .create_secret()
        .name(&client_id)
        .secret_string("id-from-secrets-manager")
        .send()
        .await
        .expect("secret created");
    let parameter = format!("/{}/catalog-secret", unique("ado-sync"));
    ssm.put_parameter()
        .name(&parameter)
        .value("secret-from-ssm")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("parameter created");
    let headers = format!("/{}/proxy-headers", unique("ado-sync"));
    ssm.put_parameter()
        .name(&headers)
        .value("X-Proxy-Key: proxy-key-from-ssm\nX-Tenant: t1")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("parameter created");

    let env = Env::resolve(
        lookup(vec![
            ("ADO_ORG_URL", "https://dev.azure.com/contoso".into()),
            (
                "ADO_PAT_SECRET_ARN",
                format!("{}#pat", json_secret.arn().expect("an ARN")),
            ),
            ("CATALOG_BASE_URL", "eu".into()),
            ("CATALOG_CLIENT_ID_SECRET_ARN", client_id),
            ("CATALOG_CLIENT_SECRET_SSM_PARAMETER", parameter),
            ("ADO_EXTRA_HEADERS_SSM_PARAMETER", headers),
        ]),
        &AwsSecretStore::new(moto::aws_access()),
    )
    .await
    .expect("every secret resolves");
    let settings = Settings::from_env(&env).expect("settings");
    let shared::config::AdoCredential::Pat(pat) = &settings.ado.credential else {
        panic!("{:?}", settings.ado.credential)
    };
    assert_eq!(pat.expose_secret(), "pat-from-secrets-manager");
    let CatalogTarget::Port {
        client_id,
        client_secret,
        ..
    } = &settings.catalog
    else {
        panic!("the Port API target");
    };
    assert_eq!(client_id, "id-from-secrets-manager");
    assert_eq!(client_secret.expose_secret(), "secret-from-ssm");
    let headers: Vec<(&str, &str)> = settings
        .ado
        .extra_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    assert_eq!(
        headers,
        [("X-Proxy-Key", "proxy-key-from-ssm"), ("X-Tenant", "t1")]
    );
    let debug = format!("{env:?} {settings:?}");
    for value in [
        "pat-from-secrets-manager",
        "secret-from-ssm",
        "proxy-key-from-ssm",
    ] {
        assert!(!debug.contains(value), "{debug}");
    }
}

#[tokio::test]
async fn unreadable_secrets_fail_the_start_naming_each_setting_and_never_a_value() {
    let config = moto::aws_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let existing = unique("ado-sync/webhook");
    secrets
        .create_secret()
        .name(&existing)
        .secret_string(r#"{"password": "hunter2-webhook"}"#)
        .send()
        .await
        .expect("secret created");

    let e = Env::resolve(
        lookup(vec![
            ("ADO_PAT_SECRET_ARN", unique("ado-sync/missing")),
            (
                "CATALOG_CLIENT_SECRET_SSM_PARAMETER",
                unique("/ado-sync/missing"),
            ),
            ("WEBHOOK_SECRET_SECRET_ARN", format!("{existing}#secret")),
        ]),
        &AwsSecretStore::new(moto::aws_access()),
    )
    .await
    .expect_err("the secrets cannot be read")
    .to_string();
    assert!(e.starts_with("3 configuration problems"), "{e}");
    for what in [
        "setting ADO_PAT from ADO_PAT_SECRET_ARN",
        "ResourceNotFoundException",
        "setting CATALOG_CLIENT_SECRET from CATALOG_CLIENT_SECRET_SSM_PARAMETER",
        "ParameterNotFound",
        "setting WEBHOOK_SECRET from WEBHOOK_SECRET_SECRET_ARN",
        "has no key \"secret\"",
    ] {
        assert!(e.contains(what), "{what}: {e}");
    }
    assert!(!e.contains("hunter2"), "{e}");
}
