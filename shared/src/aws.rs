//! The AWS calls the processor and resync functions make: the cold-start secret reads,
//! `secretsmanager.GetSecretValue` and `AmazonSSM.GetParameter`, and the action claimer's
//! `AmazonSQS.SendMessage`, as signed AWS JSON requests over the HTTP client the Azure DevOps and
//! catalog clients already use. The SDK's generic runtime (its own HTTP stack, endpoint rules,
//! credential chain with STS) was a fifth of each function's binary for two requests; `aws-sigv4`
//! (AWS's own signer) does the part that is not ours. The webhook's SQS client stays the SDK's.
//!
//! Credentials and region come from an [`AwsIdentity`], chosen at compile time like
//! [`crate::tenant::Catalogs`]: the functions take the Lambda environment
//! ([`AwsIdentity::ENVIRONMENT`]), the CLI the SDK's default chain ([`AwsIdentity::DEFAULT_CHAIN`]:
//! profiles, SSO, web identity, instance roles), so only the CLI links that chain. Endpoints honour
//! the SDK's `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables (how moto is reached) and
//! `AWS_USE_FIPS_ENDPOINT`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::retry::Backoff;

/// Each call's bound: a secret read at cold start either answers in seconds or fails the start.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Throttling and 5xx answers are retried this many times (the SDK's standard mode makes 3 attempts).
const RETRIES: u32 = 2;
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Why an AWS call failed: the service's error code and message (which name the resource, never a
/// secret value) or what kept the request from being made. Shown as `Code: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .code { Some(code) if .message.is_empty() => code.clone(), Some(code) => format!("{code}: {}", .message), None => .message.clone() })]
pub struct AwsError {
    /// The service's error code (`ResourceNotFoundException`, `ParameterNotFound`), when it gave one.
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    fn local(message: impl Into<String>) -> Self {
        Self {
            code: None,
            message: message.into(),
        }
    }
}

/// Where credentials and region come from; see the module's documentation.
#[derive(Clone, Copy)]
pub struct AwsIdentity(fn() -> BoxFuture<'static, Result<AwsAccess, AwsError>>);

impl AwsIdentity {
    /// The process environment, as Lambda sets it: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`.
    pub const ENVIRONMENT: AwsIdentity = AwsIdentity(|| Box::pin(async { from_environment() }));
    /// The AWS SDK's default chain (environment, profiles, SSO, web identity, container and instance
    /// roles), for the CLI.
    pub const DEFAULT_CHAIN: AwsIdentity = AwsIdentity(|| Box::pin(from_default_chain()));

    pub async fn resolve(self) -> Result<AwsAccess, AwsError> {
        (self.0)().await
    }
}

impl std::fmt::Debug for AwsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsIdentity")
    }
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn from_environment() -> Result<AwsAccess, AwsError> {
    let region = variable("AWS_REGION")
        .or_else(|| variable("AWS_DEFAULT_REGION"))
        .ok_or_else(|| AwsError::local("no AWS region: AWS_REGION is not set"))?;
    let (Some(key), Some(secret)) = (
        variable("AWS_ACCESS_KEY_ID"),
        variable("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err(AwsError::local(
            "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
        ));
    };
    let credentials = Credentials::new(
        key,
        secret,
        variable("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    Ok(AwsAccess::new(region, credentials, Arc::new(variable)))
}

async fn from_default_chain() -> Result<AwsAccess, AwsError> {
    use aws_credential_types::provider::ProvideCredentials as _;
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let region = config
        .region()
        .map(ToString::to_string)
        .ok_or_else(|| AwsError::local("no AWS region: set AWS_REGION or a profile's region"))?;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| AwsError::local("no AWS credentials provider"))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| AwsError::local(format!("no AWS credentials: {e}")))?;
    Ok(AwsAccess::new(region, credentials, Arc::new(variable)))
}

/// One AWS service's JSON API, as far as these calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The signing name and endpoint prefix (`secretsmanager`, `ssm`).
    pub name: &'static str,
    /// The `X-Amz-Target` prefix (`secretsmanager`, `AmazonSSM`).
    pub target: &'static str,
    /// The suffix of its `AWS_ENDPOINT_URL_<SERVICE>` variable (the SDK's service id, upper snake).
    pub endpoint_variable: &'static str,
    /// Its AWS JSON protocol version's content type (SQS speaks 1.0, the others 1.1).
    pub content_type: &'static str,
}

pub const SECRETS_MANAGER: Service = Service {
    name: "secretsmanager",
    target: "secretsmanager",
    endpoint_variable: "SECRETS_MANAGER",
    content_type: JSON_1_1,
};

pub const SSM: Service = Service {
    name: "ssm",
    target: "AmazonSSM",
    endpoint_variable: "SSM",
    content_type: JSON_1_1,
};

/// SQS's JSON protocol: the resync function's claimer queues action jobs with `SendMessage`.
pub const SQS: Service = Service {
    name: "sqs",
    target: "AmazonSQS",
    endpoint_variable: "SQS",
    content_type: "application/x-amz-json-1.0",
};

/// DynamoDB's JSON protocol: the tenant registry of the hosted service.
pub const DYNAMODB: Service = Service {
    name: "dynamodb",
    target: "DynamoDB_20120810",
    endpoint_variable: "DYNAMODB",
    content_type: "application/x-amz-json-1.0",
};

const JSON_1_1: &str = "application/x-amz-json-1.1";

/// How the endpoint variables are read (the process environment, or a test's values).
pub type Variables = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Resolved credentials, region and endpoint settings, and the HTTP client the calls share.
#[derive(Clone)]
pub struct AwsAccess {
    region: String,
    credentials: Credentials,
    /// `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_USE_FIPS_ENDPOINT`, read when asked.
    endpoints: Variables,
    http: reqwest::Client,
}

impl std::fmt::Debug for AwsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Credentials`' own Debug redacts the secret parts; the region is all that helps.
        f.debug_struct("AwsAccess")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsAccess {
    pub fn new(region: String, credentials: Credentials, endpoints: Variables) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("ado-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            region,
            credentials,
            endpoints,
            http,
        }
    }

    /// The service's endpoint: its own variable, else `AWS_ENDPOINT_URL`, else the regional
    /// (or FIPS) endpoint of the region's partition.
    pub fn endpoint(&self, service: Service) -> String {
        let own = format!("AWS_ENDPOINT_URL_{}", service.endpoint_variable);
        if let Some(url) = (self.endpoints)(&own).or_else(|| (self.endpoints)("AWS_ENDPOINT_URL")) {
            return url;
        }
        let fips = (self.endpoints)("AWS_USE_FIPS_ENDPOINT")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let suffix = match self.region.as_str() {
            r if r.starts_with("cn-") => "amazonaws.com.cn",
            r if r.starts_with("eusc-") => "amazonaws.eu",
            _ => "amazonaws.com",
        };
        let fips = if fips { "-fips" } else { "" };
        format!("https://{}{fips}.{}.{suffix}", service.name, self.region)
    }

    /// Calls `operation` with `input`; the answer's JSON body, or the service's error. Throttling,
    /// 5xx answers and connection failures are retried a few times.
    pub async fn call(
        &self,
        service: Service,
        operation: &str,
        input: &Value,
    ) -> Result<Value, AwsError> {
        let mut waits = BACKOFF.waits();
        let mut attempt = 0;
        loop {
            match self.call_once(service, operation, input).await {
                Err(Attempt::Retryable(e)) if attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(service = service.name, operation, error = %e, "retrying");
                    tokio::time::sleep(waits.next_wait()).await;
                }
                Err(Attempt::Retryable(e) | Attempt::Final(e)) => return Err(e),
                Ok(value) => return Ok(value),
            }
        }
    }

    async fn call_once(
        &self,
        service: Service,
        operation: &str,
        input: &Value,
    ) -> Result<Value, Attempt> {
        let url = self.endpoint(service);
        let body = serde_json::to_vec(input)
            .map_err(|e| Attempt::Final(AwsError::local(e.to_string())))?;
        let target = format!("{}.{operation}", service.target);
        let headers = [
            ("content-type", service.content_type),
            ("x-amz-target", target.as_str()),
        ];
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service.name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(unsigned)?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .map_err(unsigned)?;
        let (instructions, _) = sign(signable, &params).map_err(unsigned)?.into_parts();
        let mut request = self.http.post(&url).body(body);
        for (name, value) in headers.into_iter().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let answer = request.send().await.map_err(|e| {
            let e = AwsError::local(format!("{} unreachable: {}", service.name, without_url(&e)));
            Attempt::Retryable(e)
        })?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| Attempt::Retryable(AwsError::local(without_url(&e))))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|_| {
                Attempt::Final(AwsError::local(format!(
                    "{} answered {status} with a body that is not JSON",
                    service.name
                )))
            });
        }
        let error = service_error(status, &text);
        let throttled = error.code.as_deref().is_some_and(|c| {
            c.contains("Throttl")
                || matches!(
                    c,
                    "TooManyRequestsException"
                        | "ProvisionedThroughputExceededException"
                        | "RequestLimitExceeded"
                )
        });
        if status.is_server_error() || status.as_u16() == 429 || throttled {
            Err(Attempt::Retryable(error))
        } else {
            Err(Attempt::Final(error))
        }
    }
}

/// A request that could not be signed (a malformed endpoint or region): not worth another attempt.
fn unsigned(e: impl std::fmt::Display) -> Attempt {
    Attempt::Final(AwsError::local(format!("cannot sign the request: {e}")))
}

enum Attempt {
    Retryable(AwsError),
    Final(AwsError),
}

/// What failed, down to the root cause ("connection refused"), without reqwest's URL.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// The error of an AWS JSON answer: `{"__type": "[namespace#]Code[:uri]", "message"|"Message": …}`.
fn service_error(status: reqwest::StatusCode, text: &str) -> AwsError {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let code = body["__type"].as_str().map(|t| {
        let t = t.rsplit_once('#').map_or(t, |(_, code)| code);
        t.split_once(':').map_or(t, |(code, _)| code).to_owned()
    });
    let message = body["message"]
        .as_str()
        .or_else(|| body["Message"].as_str())
        .unwrap_or_default()
        .to_owned();
    match code {
        Some(code) => AwsError {
            code: Some(code),
            message,
        },
        None => AwsError::local(format!("the service answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(region: &str, vars: fn(&str) -> Option<String>) -> AwsAccess {
        AwsAccess::new(
            region.into(),
            Credentials::new("AKID", "SECRET", None, None, "test"),
            Arc::new(vars),
        )
    }

    #[test]
    fn regional_fips_and_partition_endpoints_and_the_sdk_s_overrides() {
        let none = access("eu-west-1", |_| None);
        assert_eq!(
            none.endpoint(SECRETS_MANAGER),
            "https://secretsmanager.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            access("cn-north-1", |_| None).endpoint(SSM),
            "https://ssm.cn-north-1.amazonaws.com.cn"
        );
        let fips = access("us-gov-west-1", |k| {
            (k == "AWS_USE_FIPS_ENDPOINT").then(|| "true".into())
        });
        assert_eq!(
            fips.endpoint(SSM),
            "https://ssm-fips.us-gov-west-1.amazonaws.com"
        );
        let all = access("eu-west-1", |k| {
            (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:5000".into())
        });
        assert_eq!(all.endpoint(SSM), "http://127.0.0.1:5000");
        let own = access("eu-west-1", |k| match k {
            "AWS_ENDPOINT_URL_SSM" => Some("http://ssm.local".into()),
            "AWS_ENDPOINT_URL" => Some("http://other".into()),
            _ => None,
        });
        assert_eq!(own.endpoint(SSM), "http://ssm.local");
        assert_eq!(own.endpoint(SECRETS_MANAGER), "http://other");
    }

    #[test]
    fn service_errors_keep_the_code_without_namespace_or_uri() {
        let e = service_error(
            reqwest::StatusCode::BAD_REQUEST,
            r#"{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","Message":"Secrets Manager can't find the specified secret."}"#,
        );
        assert_eq!(e.code.as_deref(), Some("ResourceNotFoundException"));
        assert_eq!(
            e.to_string(),
            "ResourceNotFoundException: Secrets Manager can't find the specified secret."
        );
        let e = service_error(
            reqwest::StatusCode::BAD_REQUEST,
            r#"{"__type":"ParameterNotFound:http://internal.amazon.com/"}"#,
        );
        assert_eq!(e.to_string(), "ParameterNotFound");
        let e = service_error(reqwest::StatusCode::BAD_GATEWAY, "<html>");
        assert_eq!(e, AwsError::local("the service answered 502 Bad Gateway"));
    }

    #[test]
    fn debug_shows_no_credentials() {
        let shown = format!("{:?}", access("eu-west-1", |_| None));
        assert!(
            !shown.contains("SECRET") && !shown.contains("AKID"),
            "{shown}"
        );
    }
}

#[cfg(test)]
mod wire {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    /// A stand-in for the service: answers with `answers` in turn and keeps each request's headers.
    async fn serve(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let log = seen.clone();
        let app = Router::new().route(
            "/",
            post(move |headers: HeaderMap| {
                log.lock().unwrap().push(headers);
                let (status, body) = answers.lock().unwrap().next().expect("an answer left");
                async move { (StatusCode::from_u16(status).unwrap(), body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn pointed_at(url: String) -> AwsAccess {
        AwsAccess::new(
            "eu-west-1".into(),
            Credentials::new(
                "AKIDTEST",
                "not-shown",
                Some("token-1".into()),
                None,
                "test",
            ),
            Arc::new(move |k: &str| (k == "AWS_ENDPOINT_URL").then(|| url.clone())),
        )
    }

    #[tokio::test]
    async fn a_call_is_signed_for_its_service_and_retried_after_a_server_error() {
        let (url, seen) = serve(vec![
            (500, r#"{"__type":"InternalFailure"}"#),
            (200, r#"{"SecretString":"s3cr3t"}"#),
        ])
        .await;
        let out = pointed_at(url)
            .call(
                SECRETS_MANAGER,
                "GetSecretValue",
                &serde_json::json!({"SecretId": "x"}),
            )
            .await
            .expect("the second attempt answers");
        assert_eq!(out["SecretString"], "s3cr3t");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let h = &seen[1];
        assert_eq!(h["x-amz-target"], "secretsmanager.GetSecretValue");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        assert_eq!(h["x-amz-security-token"], "token-1");
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
            "{auth}"
        );
        assert!(
            auth.contains("/eu-west-1/secretsmanager/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("x-amz-target"),
            "the target is signed: {auth}"
        );
        assert!(!auth.contains("not-shown"));
    }

    #[tokio::test]
    async fn a_client_error_is_final_and_keeps_the_service_s_code() {
        let (url, seen) = serve(vec![(
            400,
            r#"{"__type":"ParameterNotFound","message":""}"#,
        )])
        .await;
        let e = pointed_at(url)
            .call(SSM, "GetParameter", &serde_json::json!({"Name": "/x"}))
            .await
            .expect_err("not found");
        assert_eq!(e.code.as_deref(), Some("ParameterNotFound"));
        assert_eq!(seen.lock().unwrap().len(), 1, "no retry of a 400");
    }
}
