//! The tenant registry's DynamoDB adapter on moto's DynamoDB: each test creates its own table (through
//! the same signed JSON calls the adapter makes; the tests crate has no DynamoDB SDK).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use shared::aws::DYNAMODB;
use shared::tenants::dynamo::DynamoRegistry;
use shared::tenants::{
    CatalogAccount, OrgAuth, Organization, RegistryError, SecretRef, StoredSecret, TenantId,
    TenantOptions, TenantRecord, TenantRegistry, WebhookCredential,
};

use crate::moto;

/// A table name no other test (or run) uses.
fn unique_table() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tenants-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new table of the registry's layout (partition key `id`, on demand) and the registry on it.
async fn registry() -> DynamoRegistry {
    let table = unique_table();
    let aws = moto::aws_access();
    aws.call(
        DYNAMODB,
        "CreateTable",
        &json!({
            "TableName": table,
            "AttributeDefinitions": [{ "AttributeName": "id", "AttributeType": "S" }],
            "KeySchema": [{ "AttributeName": "id", "KeyType": "HASH" }],
            "BillingMode": "PAY_PER_REQUEST",
        }),
    )
    .await
    .expect("the table is created");
    DynamoRegistry::new(aws, table)
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn record(tenant: &str) -> TenantRecord {
    TenantRecord {
        id: id(tenant),
        name: Some("Acme".into()),
        catalog: CatalogAccount {
            base_url: "eu".into(),
            client_id: SecretRef::parse("/acme/catalog-client-id").unwrap(),
            client_secret: SecretRef::parse(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme-AbCdEf#secret",
            )
            .unwrap(),
        },
        organizations: vec![Organization {
            url: "https://dev.azure.com/acme".into(),
            auth: OrgAuth::Pat {
                pat: SecretRef::parse("env:ACME_PAT").unwrap(),
            },
        }],
        webhook: WebhookCredential {
            username: "ado".into(),
            secret: StoredSecret::generate().1,
        },
        options: TenantOptions::default(),
        created_at: "2026-12-05T00:00:00Z".into(),
        updated_at: "2026-12-05T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn an_added_tenant_reads_back_and_cannot_be_added_twice() {
    let registry = registry().await;
    let acme = record("acme");
    registry.add(&acme).await.expect("added");
    assert_eq!(registry.get(&acme.id).await.unwrap(), Some(acme.clone()));
    let mut again = record("acme");
    again.name = Some("Other".into());
    match registry.add(&again).await {
        Err(RegistryError::Exists(taken)) => assert_eq!(taken, acme.id),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        registry.get(&acme.id).await.unwrap(),
        Some(acme),
        "the first record stays"
    );
    assert_eq!(registry.get(&id("nobody")).await.unwrap(), None);
}

#[tokio::test]
async fn replace_changes_an_existing_tenant_only() {
    let registry = registry().await;
    let mut acme = record("acme");
    match registry.replace(&acme).await {
        Err(RegistryError::NotFound(missing)) => assert_eq!(missing, acme.id),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(
        registry.get(&acme.id).await.unwrap(),
        None,
        "a failed replace adds nothing"
    );
    registry.add(&acme).await.unwrap();
    acme.name = Some("Acme Corp".into());
    acme.options.excluded_tags = vec!["no-sync".into()];
    acme.updated_at = "2026-12-06T00:00:00Z".into();
    registry.replace(&acme).await.expect("replaced");
    assert_eq!(registry.get(&acme.id).await.unwrap(), Some(acme));
}

#[tokio::test]
async fn list_returns_every_tenant_by_id_across_pages() {
    let registry = registry().await;
    assert!(registry.list().await.unwrap().is_empty());
    for tenant in ["globex", "acme", "initech", "umbrella", "hooli"] {
        registry.add(&record(tenant)).await.unwrap();
    }
    let ids = |records: Vec<TenantRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.id.to_string()).collect()
    };
    let expected = ["acme", "globex", "hooli", "initech", "umbrella"];
    assert_eq!(ids(registry.list().await.unwrap()), expected);
    // moto honours `Limit`, so the pages below are real ones.
    let page = moto::aws_access()
        .call(
            DYNAMODB,
            "Scan",
            &json!({ "TableName": registry.table(), "Limit": 2 }),
        )
        .await
        .unwrap();
    assert_eq!(page["Items"].as_array().map(Vec::len), Some(2), "{page}");
    assert!(page.get("LastEvaluatedKey").is_some(), "{page}");
    // Two items a page: three Scan requests, each continuing from the last one's key.
    let paged = registry.clone().with_page_size(2);
    assert_eq!(ids(paged.list().await.unwrap()), expected);
    let one = registry.clone().with_page_size(1);
    assert_eq!(ids(one.list().await.unwrap()), expected);
}

#[tokio::test]
async fn remove_says_whether_there_was_a_tenant() {
    let registry = registry().await;
    let acme = record("acme");
    registry.add(&acme).await.unwrap();
    assert!(registry.remove(&acme.id).await.unwrap());
    assert_eq!(registry.get(&acme.id).await.unwrap(), None);
    assert!(!registry.remove(&acme.id).await.unwrap());
    registry.add(&acme).await.expect("the id is free again");
}

#[tokio::test]
async fn a_missing_table_is_a_refusal_naming_the_service_s_code() {
    let registry = DynamoRegistry::new(moto::aws_access(), unique_table());
    let refused = |e: RegistryError| match e {
        RegistryError::Refused(failure) => failure.to_string(),
        other => panic!("expected Refused, got {other:?}"),
    };
    let message = refused(registry.get(&id("acme")).await.unwrap_err());
    assert!(message.contains("ResourceNotFoundException"), "{message}");
    assert!(message.contains("DynamoDB GetItem"), "{message}");
    assert!(message.contains(registry.table()), "{message}");
    let message = refused(registry.list().await.unwrap_err());
    assert!(message.contains("ResourceNotFoundException"), "{message}");
    let message = refused(registry.add(&record("acme")).await.unwrap_err());
    assert!(message.contains("ResourceNotFoundException"), "{message}");
}

#[tokio::test]
async fn an_unreachable_service_is_unavailability() {
    // Nothing listens on port 9 (discard) of the loopback: the connection is refused at once.
    let aws = shared::aws::AwsAccess::new(
        "us-east-1".into(),
        aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "moto"),
        std::sync::Arc::new(|name: &str| {
            (name == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:9".to_owned())
        }),
    );
    let registry = DynamoRegistry::new(aws, unique_table());
    match registry.get(&id("acme")).await {
        Err(RegistryError::Unavailable(failure)) => {
            assert!(
                failure.to_string().contains("DynamoDB GetItem"),
                "{failure}"
            )
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
