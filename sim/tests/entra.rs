//! Microsoft Entra's client-credentials flow against the simulator over real HTTP: the v2.0 token
//! endpoint's answers and error shapes, the issued token as a bearer on Azure DevOps routes, its expiry
//! (forced and by itself), the counts, and the PAT rule left as it was.

use std::time::Duration;

use ado_sync_sim::RunningSim;
use ado_sync_sim::ado::{ADO_SCOPE, ADO_SCOPE_URI, AdoSimOptions, EntraApp, OrgSpec};
use reqwest::StatusCode;
use serde_json::Value;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-4333-8444-555555555555";
const SECRET: &str = "s3cr3t~value";

fn app() -> EntraApp {
    EntraApp {
        tenant_id: TENANT.into(),
        client_id: CLIENT.into(),
        client_secret: SECRET.into(),
    }
}

async fn start_sim(opts: AdoSimOptions) -> RunningSim {
    ado_sync_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        OrgSpec::small(),
        opts,
        Default::default(),
    )
    .await
    .unwrap()
}

async fn with_app() -> RunningSim {
    start_sim(AdoSimOptions {
        entra: Some(app()),
        ..Default::default()
    })
    .await
}

/// A form body, as `application/x-www-form-urlencoded`.
fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Posts a token request with these form fields; `(status, body)`.
async fn token_request(
    sim: &RunningSim,
    tenant: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            sim.entra_authority()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(self::form(form))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn creds<'a>(client: &'a str, secret: &'a str, scope: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", scope),
    ]
}

async fn token(sim: &RunningSim) -> String {
    let (status, body) = token_request(sim, TENANT, &creds(CLIENT, SECRET, ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn projects(sim: &RunningSim, auth: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!(
            "{}/_apis/projects?api-version=7.1",
            sim.ado_org_url()
        ))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
}

/// The identity platform's error shape: `error`, `error_description` starting with `AADSTS{code}:`,
/// `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
fn assert_entra_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("\r\nTrace ID: "), "{description}");
    assert_eq!(body["error_codes"], serde_json::json!([code]));
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
}

#[tokio::test]
async fn good_credentials_get_a_bearer_token_that_works_on_azure_devops_routes() {
    let sim = with_app().await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/{TENANT}/oauth2/v2.0/token",
            sim.entra_authority()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&creds(CLIENT, SECRET, ADO_SCOPE)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store, no-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let access = body["access_token"].as_str().unwrap();
    assert!(!access.is_empty());
    assert_eq!(sim.ado.entra_tokens_issued(), 1);

    let resp = projects(&sim, &format!("Bearer {access}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["count"], 3);

    // The token endpoint is counted like any route, needs no api-version and is not an ADO request.
    let counts = sim.ado.request_counts();
    assert_eq!(counts["POST /{tenantId}/oauth2/v2.0/token"], 1);
    assert!(sim.ado.requests_without_api_version().is_empty());

    // The application id URI form of the scope works too.
    let (status, _) = token_request(&sim, TENANT, &creds(CLIENT, SECRET, ADO_SCOPE_URI)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.ado.entra_tokens_issued(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn refused_token_requests_answer_as_the_identity_platform_does() {
    let sim = with_app().await;

    let (status, body) = token_request(&sim, TENANT, &creds(CLIENT, "wrong", ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_entra_error(&body, "invalid_client", 7000215);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains(&format!("for a secret added to app '{CLIENT}'"))
    );

    let other = "99999999-2222-4333-8444-555555555555";
    let (status, body) = token_request(&sim, TENANT, &creds(other, SECRET, ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "unauthorized_client", 700016);

    let graph = "https://graph.microsoft.com/.default";
    let (status, body) = token_request(&sim, TENANT, &creds(CLIENT, SECRET, graph)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "invalid_scope", 70011);

    let (status, body) = token_request(
        &sim,
        TENANT,
        &[("grant_type", "client_credentials"), ("client_id", CLIENT)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "invalid_request", 900144);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("'scope'")
    );

    let (status, body) = token_request(&sim, TENANT, &[("client_id", CLIENT)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "invalid_request", 900144);

    let (status, body) = token_request(
        &sim,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("scope", ADO_SCOPE),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_entra_error(&body, "invalid_client", 7000218);

    let mut password = creds(CLIENT, SECRET, ADO_SCOPE);
    password[0] = ("grant_type", "password");
    let (status, body) = token_request(&sim, TENANT, &password).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "unsupported_grant_type", 70003);

    for tenant in ["not-a-tenant", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"] {
        let (status, body) = token_request(&sim, tenant, &creds(CLIENT, SECRET, ADO_SCOPE)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tenant}");
        assert_entra_error(&body, "invalid_request", 90002);
    }

    assert_eq!(sim.ado.entra_tokens_issued(), 0);
    sim.stop().await;
}

#[tokio::test]
async fn without_an_app_any_credentials_work_in_any_guid_tenant() {
    let sim = start_sim(AdoSimOptions::default()).await;
    let tenant = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    let (status, body) = token_request(&sim, tenant, &creds("who", "ever", ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) =
        token_request(&sim, "contoso.onmicrosoft.com", &creds("a", "b", ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = token_request(&sim, "simorg", &creds("a", "b", ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "invalid_request", 90002);
    // The scope is still checked.
    let (status, body) = token_request(&sim, tenant, &creds("a", "b", "api://x/.default")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&body, "invalid_scope", 70011);
    sim.stop().await;
}

#[tokio::test]
async fn an_unknown_or_expired_bearer_gets_401_with_the_authority_to_ask() {
    let sim = with_app().await;
    let resp = projects(&sim, "Bearer not-a-token-we-issued").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!("Bearer authorization_uri=https://login.microsoftonline.com/{TENANT}")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["typeKey"], "UnauthorizedRequestException");

    let access = token(&sim).await;
    assert_eq!(
        projects(&sim, &format!("Bearer {access}")).await.status(),
        StatusCode::OK
    );
    sim.ado.expire_entra_tokens();
    let resp = projects(&sim, &format!("Bearer {access}")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));

    // A new token works again; the count shows the second request.
    let fresh = token(&sim).await;
    assert_ne!(fresh, access);
    assert_eq!(
        projects(&sim, &format!("Bearer {fresh}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(sim.ado.entra_tokens_issued(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn a_short_ttl_token_expires_by_itself() {
    let sim = start_sim(AdoSimOptions {
        entra: Some(app()),
        entra_token_ttl: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let access = token(&sim).await;
    assert_eq!(
        projects(&sim, &format!("Bearer {access}")).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        projects(&sim, &format!("Bearer {access}")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    sim.stop().await;
}

#[tokio::test]
async fn bearer_and_pat_rules_are_apart() {
    let sim = start_sim(AdoSimOptions {
        entra: Some(app()),
        pat: Some("the-pat".into()),
        ..Default::default()
    })
    .await;
    let basic = |pat: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{pat}"))
        )
    };
    assert_eq!(
        projects(&sim, &basic("the-pat")).await.status(),
        StatusCode::OK
    );
    let wrong = projects(&sim, &basic("other")).await;
    assert_eq!(wrong.status(), StatusCode::NON_AUTHORITATIVE_INFORMATION);
    // A PAT is not a bearer token.
    assert_eq!(
        projects(&sim, "Bearer the-pat").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // An issued token works even though it is not the PAT.
    let access = token(&sim).await;
    assert_eq!(
        projects(&sim, &format!("Bearer {access}")).await.status(),
        StatusCode::OK
    );
    sim.stop().await;

    // Without a PAT rule, Basic with anything still works and a bearer must still be issued here.
    let sim = start_sim(AdoSimOptions::default()).await;
    assert_eq!(
        projects(&sim, &basic("anything")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        projects(&sim, "Bearer made-up").await.status(),
        StatusCode::UNAUTHORIZED
    );
    sim.stop().await;
}

#[tokio::test]
async fn sim_control_routes_report_and_expire_tokens() {
    let sim = with_app().await;
    let http = reqwest::Client::new();
    let access = token(&sim).await;
    let stats: Value = http
        .get(format!("{}/_sim/entra/stats", sim.entra_authority()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, serde_json::json!({"issued": 1}));
    let resp = http
        .post(format!("{}/_sim/entra/expire", sim.entra_authority()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        projects(&sim, &format!("Bearer {access}")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The catalog side is untouched: its own token route still answers.
    let resp = http
        .post(format!("{}/v1/auth/access_token", sim.catalog_base_url()))
        .json(&serde_json::json!({"clientId": "id", "clientSecret": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_reach_the_token_endpoint() {
    let sim = with_app().await;
    sim.ado.fail_requests("/oauth2/v2.0/token", 503, Some(1));
    let (status, _) = token_request(&sim, TENANT, &creds(CLIENT, SECRET, ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = token_request(&sim, TENANT, &creds(CLIENT, SECRET, ADO_SCOPE)).await;
    assert_eq!(status, StatusCode::OK);
    sim.stop().await;
}
