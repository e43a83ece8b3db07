//! The tenant registry in a DynamoDB table (the hosted service in AWS), through signed DynamoDB JSON
//! requests ([`AwsAccess::call`]) rather than the AWS SDK, like the other calls the functions make.
//!
//! The table, one item per tenant:
//!
//! | attribute   | type | what                                                           |
//! |-------------|------|----------------------------------------------------------------|
//! | `id`        | S    | the partition key: the tenant id (no sort key)                 |
//! | `record`    | S    | the whole [`TenantRecord`] as JSON (its serde form)            |
//! | `updatedAt` | S    | the record's `updatedAt`, readable without parsing the record |
//!
//! The registry needs `dynamodb:PutItem`, `GetItem`, `Scan` and `DeleteItem` on the table. `add` and
//! `replace` are conditional puts (`attribute_not_exists(id)`, `attribute_exists(id)`), so two admins
//! never overwrite each other's new tenant; reads are strongly consistent, so a tenant just added is
//! seen by the next request. A record holds no secret value (see [`super`]), so nothing here is
//! redacted beyond keeping stored records out of error messages.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{RegistryError, TenantId, TenantRecord, TenantRegistry};
use crate::aws::{AwsAccess, AwsError, DYNAMODB};
use crate::failure::{Failure, Route};

/// The code of a put or delete whose condition did not hold.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// Codes of a service that is there but cannot answer now (still so after [`AwsAccess::call`]'s own
/// retries): the registry is unavailable, it did not refuse anything.
const TRANSIENT: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "InternalServerError",
    "ServiceUnavailable",
];

/// The longest part of a parse error kept in a [`RegistryError::Corrupt`].
const PARSE_ERROR_CHARS: usize = 200;

/// The registry in one DynamoDB table; see the module's documentation for its layout.
#[derive(Clone)]
pub struct DynamoRegistry {
    aws: AwsAccess,
    table: String,
    /// `Limit` of each `Scan` page; DynamoDB's own (1 MB of items) when unset.
    page_size: Option<u32>,
}

impl std::fmt::Debug for DynamoRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoRegistry")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoRegistry {
    /// The registry in `table` (its name or ARN), reached with `aws`.
    pub fn new(aws: AwsAccess, table: String) -> Self {
        Self {
            aws,
            table,
            page_size: None,
        }
    }

    /// Lists at most `items` items per `Scan` request (at least 1). Only a test needs this: DynamoDB
    /// pages by size on its own, and [`TenantRegistry::list`] follows the pages either way.
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(items.max(1));
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn call(&self, operation: &'static str, input: &Value) -> Result<Value, RegistryError> {
        self.aws
            .call(DYNAMODB, operation, input)
            .await
            .map_err(|e| self.failed(operation, &e))
    }

    /// The registry's error for a failed call that no operation gives a meaning of its own.
    fn failed(&self, operation: &'static str, e: &AwsError) -> RegistryError {
        let failure = Failure::request(Route::new("DynamoDB", operation))
            .with_detail(e.to_string())
            .with_context(format!("tenant table {}", self.table));
        match e.code.as_deref() {
            Some(code) if !TRANSIENT.contains(&code) => RegistryError::Refused(failure),
            // Not reached (network, timeout) or not able to answer now.
            _ => RegistryError::Unavailable(failure),
        }
    }

    /// A conditional `PutItem` of `record`; `Ok(false)` when `condition` did not hold.
    async fn put(&self, record: &TenantRecord, condition: &str) -> Result<bool, RegistryError> {
        let input = json!({
            "TableName": self.table,
            "Item": item_of(record)?,
            "ConditionExpression": condition,
        });
        match self.aws.call(DYNAMODB, "PutItem", &input).await {
            Ok(_) => Ok(true),
            Err(e) if e.code.as_deref() == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(self.failed("PutItem", &e)),
        }
    }
}

fn key_of(id: &TenantId) -> Value {
    json!({ "id": { "S": id.as_str() } })
}

fn item_of(record: &TenantRecord) -> Result<Value, RegistryError> {
    let text = serde_json::to_string(record).map_err(|e| {
        RegistryError::Corrupt(format!("tenant {} cannot be written: {e}", record.id))
    })?;
    Ok(json!({
        "id": { "S": record.id.as_str() },
        "record": { "S": text },
        "updatedAt": { "S": record.updated_at },
    }))
}

/// The record of a stored item. The error names the tenant and what is wrong, never the record.
fn record_of(item: &Value) -> Result<TenantRecord, RegistryError> {
    let id = item["id"]["S"].as_str().unwrap_or("(without an id)");
    let short: String = id.chars().take(40).collect();
    let corrupt = |what: String| RegistryError::Corrupt(format!("tenant {short}: {what}"));
    let text = item["record"]["S"]
        .as_str()
        .ok_or_else(|| corrupt("the item has no string attribute `record`".into()))?;
    let record: TenantRecord = serde_json::from_str(text).map_err(|e| {
        let why: String = e.to_string().chars().take(PARSE_ERROR_CHARS).collect();
        corrupt(format!("the stored record does not parse: {why}"))
    })?;
    if record.id.as_str() != id {
        return Err(corrupt(format!(
            "the stored record is tenant {}'s",
            record.id
        )));
    }
    Ok(record)
}

#[async_trait]
impl TenantRegistry for DynamoRegistry {
    async fn add(&self, record: &TenantRecord) -> Result<(), RegistryError> {
        if self.put(record, "attribute_not_exists(id)").await? {
            Ok(())
        } else {
            Err(RegistryError::Exists(record.id.clone()))
        }
    }

    async fn replace(&self, record: &TenantRecord) -> Result<(), RegistryError> {
        if self.put(record, "attribute_exists(id)").await? {
            Ok(())
        } else {
            Err(RegistryError::NotFound(record.id.clone()))
        }
    }

    async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, RegistryError> {
        let input = json!({
            "TableName": self.table,
            "Key": key_of(id),
            "ConsistentRead": true,
        });
        let answer = self.call("GetItem", &input).await?;
        match answer.get("Item") {
            Some(item) if item.as_object().is_some_and(|o| !o.is_empty()) => {
                record_of(item).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        let mut records = Vec::new();
        let mut start: Option<Value> = None;
        loop {
            let mut input = json!({
                "TableName": self.table,
                "ConsistentRead": true,
            });
            if let Some(limit) = self.page_size {
                input["Limit"] = json!(limit);
            }
            if let Some(key) = start.take() {
                input["ExclusiveStartKey"] = key;
            }
            let answer = self.call("Scan", &input).await?;
            for item in answer["Items"].as_array().into_iter().flatten() {
                records.push(record_of(item)?);
            }
            match answer.get("LastEvaluatedKey") {
                Some(key) if key.as_object().is_some_and(|o| !o.is_empty()) => {
                    start = Some(key.clone());
                }
                _ => break,
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    async fn remove(&self, id: &TenantId) -> Result<bool, RegistryError> {
        let input = json!({
            "TableName": self.table,
            "Key": key_of(id),
            "ReturnValues": "ALL_OLD",
        });
        let answer = self.call("DeleteItem", &input).await?;
        Ok(answer
            .get("Attributes")
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_credential_types::Credentials;

    use super::*;
    use crate::tenants::tests::record;

    fn registry() -> DynamoRegistry {
        let aws = AwsAccess::new(
            "eu-west-1".into(),
            Credentials::new("AKID", "SECRET", None, None, "test"),
            Arc::new(|_: &str| None),
        );
        DynamoRegistry::new(aws, "tenants".into())
    }

    fn error(code: Option<&str>) -> AwsError {
        AwsError {
            code: code.map(Into::into),
            message: "why".into(),
        }
    }

    #[test]
    fn refusals_are_the_service_s_codes_and_the_rest_is_unavailability() {
        let r = registry();
        let refused = r.failed("GetItem", &error(Some("ResourceNotFoundException")));
        assert!(matches!(refused, RegistryError::Refused(_)), "{refused:?}");
        assert_eq!(
            refused.to_string(),
            "the tenant registry refused the request: tenant table tenants: DynamoDB GetItem: \
             ResourceNotFoundException: why"
        );
        for transient in [None, Some("ProvisionedThroughputExceededException")] {
            let e = r.failed("Scan", &error(transient));
            assert!(matches!(e, RegistryError::Unavailable(_)), "{e:?}");
        }
    }

    #[test]
    fn an_item_holds_the_record_and_reads_back() {
        let r = record("acme");
        let item = item_of(&r).unwrap();
        assert_eq!(item["id"]["S"], "acme");
        assert_eq!(item["updatedAt"]["S"], r.updated_at.as_str());
        assert_eq!(record_of(&item).unwrap(), r);
    }

    #[test]
    fn an_unreadable_item_names_its_tenant_not_its_content() {
        let mut item = item_of(&record("acme")).unwrap();
        item["record"]["S"] = json!(r#"{"id":"acme","catalog":"secret-looking-content"#);
        let RegistryError::Corrupt(why) = record_of(&item).unwrap_err() else {
            panic!("corrupt")
        };
        assert!(why.starts_with("tenant acme: "), "{why}");
        assert!(!why.contains("secret-looking-content"), "{why}");
        item["id"]["S"] = json!("other");
        item["record"]["S"] = json!(serde_json::to_string(&record("acme")).unwrap());
        let e = record_of(&item).unwrap_err();
        assert!(e.to_string().contains("tenant other"), "{e}");
        item.as_object_mut().unwrap().remove("record");
        assert!(matches!(record_of(&item), Err(RegistryError::Corrupt(_))));
    }

    #[test]
    fn debug_shows_the_table_only() {
        let shown = format!("{:?}", registry().with_page_size(0));
        assert!(shown.contains("tenants"), "{shown}");
        assert!(
            !shown.contains("AKID") && !shown.contains("SECRET"),
            "{shown}"
        );
    }
}
