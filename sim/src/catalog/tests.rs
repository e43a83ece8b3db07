//! The Port client against the simulated catalog over a real listener: the client's wire behaviour
//! and the server's contract, tested together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CatalogSim, CatalogSimOptions, Fault, FaultAction};
use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::catalog::port::{PortClient, PortConfig};
use shared::catalog::{
    Catalog, CatalogError, Entity, EntityKey, UpsertOutcome, WriteOptions, WriteReason,
};

const BULK: &str = "POST /v1/blueprints/{bp}/entities/bulk";
const SINGLE: &str = "POST /v1/blueprints/{bp}/entities";
const TOKEN: &str = "POST /v1/auth/access_token";

struct TestCatalog {
    sim: Arc<CatalogSim>,
    base: url::Url,
    addr: std::net::SocketAddr,
}

async fn spawn(opts: CatalogSimOptions) -> TestCatalog {
    let sim = CatalogSim::new(opts).unwrap();
    let app = axum::Router::new()
        .nest("/catalog", sim.router())
        .merge(sim.control_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TestCatalog {
        sim,
        base: url::Url::parse(&format!("http://{addr}/catalog")).unwrap(),
        addr,
    }
}

impl TestCatalog {
    fn client(&self, identifier: &str) -> PortClient {
        self.client_with(identifier, "0.1.0", |_| {})
    }

    fn client_with(
        &self,
        identifier: &str,
        version: &str,
        tweak: impl FnOnce(&mut PortConfig),
    ) -> PortClient {
        let mut cfg = PortConfig::new(
            "client-id",
            SecretString::from("s3cret-value"),
            identifier,
            version,
        );
        cfg.base_url = self.base.clone();
        cfg.timeout = Duration::from_secs(10);
        cfg.max_retries = 3;
        tweak(&mut cfg);
        PortClient::new(cfg).unwrap()
    }
}

fn opts() -> WriteOptions {
    WriteOptions {
        merge: true,
        create_missing_related_entities: true,
        reason: WriteReason::Resync,
        resync_id: Some("resync-1".into()),
    }
}

fn repo(id: &str) -> Entity {
    serde_json::from_value(json!({
        "identifier": id, "blueprint": "repo", "title": format!("Repo {id}"),
        "properties": {"url": format!("https://dev.azure.com/org/_git/{id}")},
        "relations": {"project": "p1"}
    }))
    .unwrap()
}

fn repos(n: usize) -> Vec<Entity> {
    (0..n).map(|i| repo(&format!("r{i:03}"))).collect()
}

fn all_upserted(out: &[UpsertOutcome]) -> bool {
    out.iter()
        .all(|o| matches!(o, UpsertOutcome::Upserted { .. }))
}

#[tokio::test]
async fn a_token_is_fetched_once_and_reused() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    client.upsert("repo", &repos(3), &opts()).await.unwrap();
    client.find("repo", &["r000".into()]).await.unwrap();
    assert_eq!(t.sim.request_count(TOKEN), 1);
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized() {
    let t = spawn(CatalogSimOptions {
        client_id: Some("client-id".into()),
        client_secret: Some("the-right-one".into()),
        ..Default::default()
    })
    .await;
    let err = t
        .client("ado")
        .upsert("repo", &repos(1), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Unauthorized(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cret"));
}

#[tokio::test]
async fn an_expired_token_is_refreshed() {
    let t = spawn(CatalogSimOptions {
        token_ttl: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let client = t.client("ado");
    client.upsert("repo", &repos(1), &opts()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let out = client.upsert("repo", &repos(1), &opts()).await.unwrap();
    assert!(all_upserted(&out));
    assert_eq!(t.sim.request_count(TOKEN), 2);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_the_call() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    client.upsert("repo", &repos(1), &opts()).await.unwrap();
    t.sim.fail_requests("/entities/search", 401, Some(1));
    let found = client.find("repo", &["r000".into()]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(t.sim.request_count(TOKEN), 2);
    assert_eq!(t.sim.request_count("POST /v1/entities/search"), 2);

    t.sim.fail_requests("/entities/search", 401, None);
    let err = client.find("repo", &["r000".into()]).await.unwrap_err();
    assert!(matches!(err, CatalogError::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn twenty_one_entities_go_in_two_bulk_requests() {
    let t = spawn(CatalogSimOptions::default()).await;
    let out = t
        .client("ado")
        .upsert("repo", &repos(21), &opts())
        .await
        .unwrap();
    assert_eq!(out.len(), 21);
    assert!(all_upserted(&out));
    assert_eq!(
        out[20],
        UpsertOutcome::Upserted {
            identifier: "r020".into(),
            created: true
        }
    );
    assert_eq!(t.sim.request_count(BULK), 2);
    assert_eq!(t.sim.store().count().unwrap(), 21);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_split_by_size_and_an_oversized_entity_is_never_sent() {
    let t = spawn(CatalogSimOptions::default()).await;
    let mut entities: Vec<Entity> = (0..4)
        .map(|i| {
            let mut e = repo(&format!("big{i}"));
            e.properties
                .as_mut()
                .unwrap()
                .insert("readme".into(), json!("x".repeat(400_000)));
            e
        })
        .collect();
    let mut huge = repo("huge");
    huge.properties
        .as_mut()
        .unwrap()
        .insert("readme".into(), json!("y".repeat(1_100_000)));
    entities.insert(2, huge);

    let out = t
        .client("ado")
        .upsert("repo", &entities, &opts())
        .await
        .unwrap();
    assert!(matches!(out[2], UpsertOutcome::Failed { status: 413, .. }));
    for i in [0, 1, 3, 4] {
        assert!(
            matches!(out[i], UpsertOutcome::Upserted { .. }),
            "{i}: {:?}",
            out[i]
        );
    }
    assert_eq!(
        t.sim.request_count(BULK),
        2,
        "two entities of 400 kB per request"
    );
    assert!(t.sim.store().get("repo", "huge").unwrap().is_none());
}

#[tokio::test]
async fn per_entity_errors_of_a_207_map_back_by_index() {
    let t = spawn(CatalogSimOptions::default()).await;
    t.sim
        .store()
        .put_blueprint(&json!({"identifier": "repo", "relations": {"project": {"target": "project", "many": false}}}))
        .unwrap();
    t.sim
        .store()
        .put_blueprint(&json!({"identifier": "project"}))
        .unwrap();
    let client = t.client("ado");
    let no_missing = WriteOptions {
        create_missing_related_entities: false,
        ..opts()
    };
    client
        .upsert(
            "project",
            &[
                serde_json::from_value(json!({"identifier": "p1", "blueprint": "project"}))
                    .unwrap(),
            ],
            &no_missing,
        )
        .await
        .unwrap();

    let mut orphan = repo("orphan");
    orphan.relations = Some(serde_json::from_value(json!({"project": "p-missing"})).unwrap());
    let mut other_blueprint = repo("stray");
    other_blueprint.blueprint = "pipeline".into();
    let out = client
        .upsert(
            "repo",
            &[repo("a"), orphan, repo("b"), other_blueprint],
            &no_missing,
        )
        .await
        .unwrap();
    assert!(matches!(out[0], UpsertOutcome::Upserted { .. }));
    assert!(
        matches!(&out[1], UpsertOutcome::Failed { status: 404, error, .. } if error == "not_found")
    );
    assert!(matches!(out[2], UpsertOutcome::Upserted { .. }));
    assert!(matches!(out[3], UpsertOutcome::Failed { status: 422, .. }));
}

#[tokio::test]
async fn a_413_for_a_chunk_falls_back_to_single_upserts() {
    let t = spawn(CatalogSimOptions::default()).await;
    t.sim.fail_requests("/entities/bulk", 413, Some(1));
    let out = t
        .client("ado")
        .upsert("repo", &repos(3), &opts())
        .await
        .unwrap();
    assert!(all_upserted(&out), "{out:?}");
    assert_eq!(
        out[1],
        UpsertOutcome::Upserted {
            identifier: "r001".into(),
            created: true
        }
    );
    assert_eq!(t.sim.request_count(BULK), 1);
    assert_eq!(t.sim.request_count(SINGLE), 3);
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_the_server_asks_for() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    client.find("repo", &["warm-up".into()]).await.unwrap();
    t.sim
        .fail_requests_with_headers("/entities/bulk", 429, Some(1), &[("retry-after", "1")]);
    let started = Instant::now();
    let out = client.upsert("repo", &repos(2), &opts()).await.unwrap();
    assert!(all_upserted(&out));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(t.sim.request_count(BULK), 2);
}

#[tokio::test]
async fn gateway_errors_that_outlive_the_retries_are_transient() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client_with("ado", "0.1.0", |c| c.max_retries = 2);
    t.sim.fail_requests("/entities/bulk", 503, None);
    let err = client.upsert("repo", &repos(2), &opts()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(t.sim.request_count(BULK), 3, "one attempt and two retries");
}

#[tokio::test]
async fn a_500_is_not_retried_and_fails_each_entity_of_the_chunk() {
    let t = spawn(CatalogSimOptions::default()).await;
    t.sim.fail_requests("/entities/bulk", 500, Some(1));
    let out = t
        .client("ado")
        .upsert("repo", &repos(2), &opts())
        .await
        .unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, UpsertOutcome::Failed { status: 500, .. })),
        "{out:?}"
    );
    assert_eq!(t.sim.request_count(BULK), 1);
}

#[tokio::test]
async fn find_returns_the_stored_fields_of_owned_entities_in_chunks_of_fifty() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    client.upsert("repo", &repos(60), &opts()).await.unwrap();
    let mut ids: Vec<String> = (0..60).map(|i| format!("r{i:03}")).collect();
    ids.push("missing".into());
    let mut found = client.find("repo", &ids).await.unwrap();
    found.sort_by(|a, b| a.identifier.as_str().cmp(&b.identifier.as_str()));
    assert_eq!(found.len(), 60);
    assert_eq!(t.sim.request_count("POST /v1/entities/search"), 2);
    let first = &found[0];
    assert_eq!(first.title, Some(json!("Repo r000")));
    assert_eq!(
        first.properties.as_ref().unwrap()["url"],
        "https://dev.azure.com/org/_git/r000"
    );
    assert_eq!(first.relations.as_ref().unwrap()["project"], "p1");
}

#[tokio::test]
async fn owned_lists_only_this_identifiers_entities_before_the_cutoff_across_versions() {
    let t = spawn(CatalogSimOptions::default()).await;
    let ours = t.client("ado");
    let ours_upgraded = t.client_with("ado", "9.9.9", |_| {});
    let theirs = t.client("other-ado");
    ours.upsert("repo", &repos(3), &opts()).await.unwrap();
    theirs
        .upsert("repo", &[repo("theirs")], &opts())
        .await
        .unwrap();
    // The cutoff is sent in milliseconds, truncated: an entity of its own millisecond counts as after it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    ours.upsert("repo", &[repo("late")], &opts()).await.unwrap();

    let page = ours_upgraded.owned(cutoff, None).await.unwrap();
    let keys: Vec<String> = page.entities.iter().map(EntityKey::to_string).collect();
    assert_eq!(keys, vec!["repo/r000", "repo/r001", "repo/r002"]);
    assert!(page.next.is_none());
    assert!(
        theirs
            .find("repo", &["r000".into()])
            .await
            .unwrap()
            .is_empty()
    );

    // Ownership is the User-Agent, recorded as `$datasource`.
    let stored = t.sim.store().get("repo", "theirs").unwrap().unwrap();
    assert_eq!(
        stored.datasource,
        "port-ocean/azure-devops/0.1.0/other-ado/exporter"
    );
}

#[tokio::test]
async fn delete_removes_what_exists_in_chunks_of_a_hundred() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    let entities = repos(120);
    for chunk in entities.chunks(60) {
        client.upsert("repo", chunk, &opts()).await.unwrap();
    }
    let mut ids: Vec<String> = (0..120).map(|i| format!("r{i:03}")).collect();
    ids.push("never-there".into());
    let mut deleted = client.delete("repo", &ids, false, &opts()).await.unwrap();
    deleted.sort();
    assert_eq!(deleted.len(), 120);
    assert_eq!(
        t.sim
            .request_count("POST /v1/blueprints/{bp}/bulk/entities/delete"),
        2
    );
    assert_eq!(t.sim.store().count().unwrap(), 0);
}

#[tokio::test]
async fn the_integration_record_and_resync_state_round_trip() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    assert_eq!(client.integration().await.unwrap(), None);
    t.sim
        .store()
        .put_integration(
            "ado",
            &json!({"identifier": "ado", "config": {"resources": []}}),
        )
        .unwrap();
    client
        .patch_resync_state(json!({"status": "running"}))
        .await
        .unwrap();
    let record = client.integration().await.unwrap().unwrap();
    assert_eq!(record["config"], json!({"resources": []}));
    assert_eq!(record["resyncState"]["status"], "running");
    let ingest = record["logAttributes"]["ingestUrl"].as_str().unwrap();
    assert!(ingest.starts_with(t.base.as_str()), "{ingest}");

    // A failing state report is logged, not raised.
    t.sim.fail_requests("/resync-state", 500, None);
    client
        .patch_resync_state(json!({"status": "completed"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn blueprints_and_the_integration_record_are_created_and_relations_need_their_target() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    assert_eq!(client.blueprint("repo").await.unwrap(), None);
    let repo = json!({"identifier": "repo", "relations": {"project": {"target": "project", "required": false, "many": false}}});
    let e = client.create_blueprint(&repo).await.unwrap_err();
    assert!(e.to_string().contains("\"project\" does not exist"), "{e}");
    client
        .create_blueprint(&json!({"identifier": "repo"}))
        .await
        .unwrap();
    let e = client
        .patch_blueprint("repo", &json!({"relations": repo["relations"]}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    client
        .create_blueprint(&json!({"identifier": "project"}))
        .await
        .unwrap();
    client
        .patch_blueprint("repo", &json!({"relations": repo["relations"]}))
        .await
        .unwrap();
    assert_eq!(
        client.blueprint("repo").await.unwrap().unwrap()["relations"],
        repo["relations"]
    );
    let e = client
        .create_blueprint(&json!({"identifier": "repo"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
    client.delete_blueprint("repo").await.unwrap();
    assert_eq!(client.blueprint("repo").await.unwrap(), None);

    client
        .create_integration(
            json!({"installationAppType": "azure-devops", "config": {"resources": []}}),
        )
        .await
        .unwrap();
    let record = client.integration().await.unwrap().unwrap();
    assert_eq!(record["identifier"], "ado");
    assert_eq!(record["config"], json!({"resources": []}));
}

#[tokio::test]
async fn the_secret_and_token_stay_out_of_debug_output() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    client.upsert("repo", &repos(1), &opts()).await.unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("s3cret-value"), "{shown}");
    assert!(!shown.to_lowercase().contains("bearer"), "{shown}");
}

#[tokio::test]
async fn the_server_refuses_oversized_bulk_requests_and_unknown_tokens() {
    let t = spawn(CatalogSimOptions {
        strict_blueprints: true,
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    let base = t.base.as_str();
    let unauth = http
        .post(format!("{base}/v1/blueprints/repo/entities/bulk"))
        .json(&json!({"entities": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);

    let token: Value = http
        .post(format!("{base}/v1/auth/access_token"))
        .json(&json!({"clientId": "a", "clientSecret": "b"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth = format!("Bearer {}", token["accessToken"].as_str().unwrap());
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("authorization", &auth)
            .header("user-agent", "test")
            .json(&body)
    };
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"identifier": format!("e{i}"), "blueprint": "repo"}))
        .collect();
    let resp = post(
        "/v1/blueprints/repo/entities/bulk",
        json!({"entities": many}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 422);
    let big = json!({"entities": [{"identifier": "e", "blueprint": "repo", "properties": {"x": "z".repeat(1_100_000)}}]});
    let resp = post("/v1/blueprints/repo/entities/bulk", big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Strict blueprints: an undefined blueprint fails each entity.
    let resp = post(
        "/v1/blueprints/repo/entities/bulk",
        json!({"entities": [{"identifier": "e", "blueprint": "repo"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 207);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["statusCode"], 404);

    let resp = post(
        "/v1/entities/search?include=identifier&include=properties.x",
        json!({"combinator": "and", "rules": []}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        t.sim
            .request_count("POST /v1/blueprints/{bp}/entities/bulk"),
        4
    );
}

#[tokio::test]
async fn expired_tokens_get_401_until_the_client_fetches_a_new_one() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    client.upsert("repo", &repos(2), &opts()).await.unwrap();
    t.sim
        .inject(Fault::new("/entities/bulk", FaultAction::ExpireTokens).times(1));
    let out = client.upsert("repo", &repos(3), &opts()).await.unwrap();
    assert!(all_upserted(&out), "{out:?}");
    assert_eq!(t.sim.request_count(TOKEN), 2, "a new token after the 401");
    assert_eq!(
        t.sim.request_count(BULK),
        3,
        "the refused call was repeated"
    );

    // Expired at once, out of band: the next call of any kind refreshes too.
    t.sim.expire_tokens();
    assert_eq!(
        client.find("repo", &["r000".into()]).await.unwrap().len(),
        1
    );
    assert_eq!(t.sim.request_count(TOKEN), 3);
}

#[tokio::test]
async fn a_rejected_entity_of_a_bulk_upsert_is_a_422_in_a_207_and_the_others_are_stored() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    t.sim.inject(
        Fault::new(
            "/entities/bulk",
            FaultAction::RejectEntity(Some("r001".into())),
        )
        .times(1),
    );
    // A request without r001 neither triggers the fault nor uses it up.
    client.upsert("repo", &[repo("x")], &opts()).await.unwrap();
    let out = client.upsert("repo", &repos(3), &opts()).await.unwrap();
    assert!(matches!(out[0], UpsertOutcome::Upserted { .. }), "{out:?}");
    assert!(
        matches!(&out[1], UpsertOutcome::Failed { status: 422, message, .. } if message.contains("r001")),
        "{out:?}"
    );
    assert!(matches!(out[2], UpsertOutcome::Upserted { .. }), "{out:?}");
    assert!(t.sim.store().get("repo", "r001").unwrap().is_none());
    assert!(t.sim.store().get("repo", "r002").unwrap().is_some());
    // Used up: the next write of r001 goes through.
    let again = client.upsert("repo", &repos(2), &opts()).await.unwrap();
    assert!(all_upserted(&again), "{again:?}");

    // Without an identifier, the first entity of the request; a single upsert is refused whole.
    t.sim
        .inject(Fault::new("/entities", FaultAction::RejectEntity(None)).times(1));
    let out = client.upsert("repo", &repos(2), &opts()).await.unwrap();
    assert!(
        matches!(out[0], UpsertOutcome::Failed { status: 422, .. }),
        "{out:?}"
    );
    assert!(matches!(out[1], UpsertOutcome::Upserted { .. }), "{out:?}");
}

#[tokio::test]
async fn a_dropped_connection_is_retried_and_a_lasting_one_fails_as_transient() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client_with("ado", "0.1.0", |c| c.max_retries = 2);
    client.upsert("repo", &repos(1), &opts()).await.unwrap();
    t.sim
        .inject(Fault::new("/entities/search", FaultAction::Reset).times(1));
    assert_eq!(
        client.find("repo", &["r000".into()]).await.unwrap().len(),
        1
    );
    assert_eq!(t.sim.request_count("POST /v1/entities/search"), 2);

    t.sim
        .inject(Fault::new("/entities/search", FaultAction::Reset));
    let err = client.find("repo", &["r000".into()]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(t.sim.request_count("POST /v1/entities/search"), 5);
}

#[tokio::test]
async fn a_slow_answer_past_the_client_timeout_fails_the_call() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client_with("ado", "0.1.0", |c| {
        c.timeout = Duration::from_millis(300);
        c.max_retries = 0;
    });
    client.upsert("repo", &repos(1), &opts()).await.unwrap();
    t.sim.inject(
        Fault::new(
            "/entities/search",
            FaultAction::Slow(Duration::from_secs(20)),
        )
        .times(1),
    );
    let err = client.find("repo", &["r000".into()]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        client.find("repo", &["r000".into()]).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn stats_and_faults_are_served_under_sim_catalog() {
    let t = spawn(CatalogSimOptions::default()).await;
    let client = t.client("ado");
    let http = reqwest::Client::new();
    let control = |path: &str| format!("http://{}/_sim/catalog/{path}", t.addr);
    let r = http
        .post(control("faults"))
        .json(&json!({"path_contains": "/entities/bulk", "method": "POST", "action": {"status": 503}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    client.upsert("repo", &repos(3), &opts()).await.unwrap();
    client.find("repo", &["r000".into()]).await.unwrap();
    client
        .delete("repo", &["r001".into()], false, &opts())
        .await
        .unwrap();
    let r = http
        .post(control("faults"))
        .json(&json!({"path_contains": "/entities/search", "action": "reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        http.delete(control("faults"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    client.find("repo", &["r000".into()]).await.unwrap();
    assert_eq!(
        http.post(control("tokens/expire"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    client.find("repo", &["r000".into()]).await.unwrap();

    let stats: Value = http
        .get(control("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["writes"], 3,
        "two bulk upserts (one refused) and a delete: {stats}"
    );
    assert_eq!(
        stats["searches"], 4,
        "three searches, one refused with 401: {stats}"
    );
    assert_eq!(stats["other"], 2, "two tokens: {stats}");
    assert_eq!(stats["total"], 9);
    assert_eq!(stats["requests"][BULK], 2);
    assert_eq!(stats, serde_json::to_value(t.sim.stats()).unwrap());
}

/// The action-run API (pull and push models), over the same listener.
mod actions;
