//! The `ado-sync` binary as other tools use it: `sim` prints its URLs and serves, `resync` against those
//! URLs works with any credentials, `map` prints entities as JSON Lines and exits 2 on a bad mapping.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ado-sync");

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Sim {
    child: Child,
    urls: Value,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim() -> Sim {
    start_sim_with(&[])
}

/// The simulator with extra `sim` options (e.g. a latency).
fn start_sim_with(options: &[&str]) -> Sim {
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0", "--size", "small"])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: Value = serde_json::from_str(&line).expect("sim prints one JSON line");
    Sim { child, urls }
}

/// `ado-sync resync` with `args`, pointed at the simulator with any credentials.
fn resync_against(sim: &Sim, args: &[&str]) -> std::process::Output {
    resync_against_with(sim, args, &[])
}

/// The same with extra environment variables (e.g. `LOG_FORMAT`).
fn resync_against_with(sim: &Sim, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .arg("resync")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .env("ADO_ORG_URL", sim.urls["ado_org_url"].as_str().unwrap())
        .env("ADO_PAT", "anything")
        .env(
            "CATALOG_BASE_URL",
            sim.urls["catalog_base_url"].as_str().unwrap(),
        )
        .env("CATALOG_CLIENT_ID", "any-id")
        .env("CATALOG_CLIENT_SECRET", "any-secret")
        .output()
        .unwrap()
}

#[test]
fn resync_against_the_simulator_urls_works_with_any_credentials() {
    let sim = start_sim();
    let out = resync_against(&sim, &["--json"]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = report["kinds"].as_array().unwrap();
    assert_eq!(
        kinds.len(),
        29,
        "the shipped default mapping covers every kind"
    );
    assert!(
        kinds
            .iter()
            .all(|k| k["errors"] == 0 && k["upserted"].as_u64().unwrap() > 0),
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("work-item[4]"),
        "progress goes to stderr: {stderr}"
    );
    assert!(!stderr.contains("any-secret"));
}

#[test]
fn resync_with_a_missing_setting_names_it_and_exits_2() {
    let out = Command::new(BIN)
        .args(["resync"])
        .env_clear()
        .env("ADO_PAT", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADO_ORG_URL"));
}

#[test]
fn resync_reports_every_problem_at_once_under_peer_names_too() {
    let out = Command::new(BIN)
        .args(["resync"])
        .env_clear()
        .env(
            "OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN",
            "peer-pat-value",
        )
        .env("OCEAN__PORT__BASE_URL", "eu")
        .env("OCEAN__PORT__CLIENT_ID", "id")
        .env("ADO_MAX_RETRIES", "many")
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 configuration problems"), "{stderr}");
    for name in ["ADO_ORG_URL", "ADO_MAX_RETRIES", "CATALOG_CLIENT_SECRET"] {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    assert!(!stderr.contains("peer-pat-value"), "{stderr}");
}

#[test]
fn map_prints_one_entity_per_line_in_the_upsert_body_shape() {
    let out = Command::new(BIN)
        .args([
            "map",
            "--mapping",
            &data("peer-port-app-config.yaml"),
            "--kind",
            "project",
            "--input",
            &data("project-a.json"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    assert_eq!(e["identifier"], "31440986-0c26-4def-ae3d-feadd2d3498e");
    assert_eq!(e["blueprint"], "azureDevopsProject");
    assert_eq!(e["title"], "test-azure-sync-project");
    assert_eq!(
        e["properties"]["defaultTeam"],
        "test-azure-sync-project Team"
    );
    assert_eq!(
        e["properties"]["link"],
        "[REDACTED]/31440986-0c26-4def-ae3d-feadd2d3498e"
    );
    assert!(
        e.get("icon").is_none() && e.get("relations").is_none(),
        "only mapped keys: {e}"
    );
}

#[test]
fn map_reads_json_lines_from_stdin_in_input_order() {
    let a = std::fs::read_to_string(data("project-a.json")).unwrap();
    let b = std::fs::read_to_string(data("project-b.json")).unwrap();
    let input = format!("{}\n{}\n", compact(&b), compact(&a));
    let mut child = Command::new(BIN)
        .args([
            "map",
            "--mapping",
            &data("peer-port-app-config.yaml"),
            "--kind",
            "project",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["identifier"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let id = |s: &str| {
        serde_json::from_str::<Value>(s).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(ids, vec![id(&b), id(&a)]);
}

#[test]
fn map_exits_2_on_an_invalid_mapping_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "resources:\n  - kind: project\n    selector:\n      query: 'true'\n    port:\n      entity:\n        mappings:\n          identifier: .id | gsub(\n          blueprint: '\"p\"'\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "map",
            "--mapping",
            bad.to_str().unwrap(),
            "--kind",
            "project",
            "--input",
            &data("project-a.json"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("identifier"), "{stderr}");
}

fn compact(json: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<Value>(json).unwrap()).unwrap()
}

#[test]
fn the_demo_syncs_all_five_kinds_and_shows_a_live_change_reaching_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    let out = Command::new(BIN)
        .args(["demo", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for blueprint in [
        "azureDevopsProject",
        "azureDevopsRepository",
        "azureDevopsPullRequest",
        "azureDevopsPipeline",
        "azureDevopsWorkItem",
    ] {
        assert!(stdout.contains(blueprint), "{blueprint} missing: {stdout}");
    }
    let live = stdout
        .lines()
        .find(|l| l.starts_with("Live change:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        live.contains("webhook -> queue -> processor") && live.contains("(renamed live)\""),
        "{live}"
    );
    assert!(!live.contains("0 event(s)"), "{live}");
}

#[test]
fn resync_with_max_seconds_stops_at_the_limit_and_exits_3_as_incomplete() {
    let sim = start_sim_with(&["--latency-ms", "200"]);
    let out = resync_against(&sim, &["--json", "--max-seconds", "1"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stopped"]["reason"], "deadline", "{report}");
    assert_eq!(report["deletion"]["outcome"], "skipped_incomplete");
}

#[test]
fn a_dry_run_exits_4_when_the_pass_would_change_something_and_0_when_not() {
    let sim = start_sim();
    let preview = |out: &std::process::Output| -> Value {
        let both: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        both["preview"].clone()
    };
    let first = resync_against(&sim, &["--dry-run", "--json"]);
    assert_eq!(
        first.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let created = preview(&first)["blueprints"]["azureDevopsProject"]["create"].clone();
    assert!(created.as_u64().unwrap() > 0, "{}", preview(&first));
    // Nothing was written: the same dry run predicts the same.
    let again = resync_against(&sim, &["--dry-run", "--json"]);
    assert_eq!(again.status.code(), Some(4));
    assert_eq!(preview(&again), preview(&first));

    let real = resync_against(&sim, &["--json"]);
    assert!(
        real.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&real.stderr)
    );
    let after = resync_against(&sim, &["--dry-run"]);
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    assert!(String::from_utf8_lossy(&after.stdout).contains("Nothing would change."));
}

/// Non-null fields only: a mapped `null` and an absent key are the same entity.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_piped_into_map_give_what_a_resync_writes_for_that_kind() {
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        sim::ado::OrgSpec::small(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let (ado, catalog) = (sim.ado_org_url(), sim.catalog_base_url());
    let run = move |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .env("ADO_ORG_URL", &ado)
            .env("ADO_PAT", "anything")
            .env("CATALOG_BASE_URL", &catalog)
            .env("CATALOG_CLIENT_ID", "any-id")
            .env("CATALOG_CLIENT_SECRET", "any-secret")
            .output()
            .unwrap()
    };
    let run = std::sync::Arc::new(run);
    let blocking = |args: Vec<&'static str>| {
        let run = std::sync::Arc::clone(&run);
        tokio::task::spawn_blocking(move || run(&args))
    };
    let resync = blocking(vec!["resync"]).await.unwrap();
    assert!(
        resync.status.success(),
        "{}",
        String::from_utf8_lossy(&resync.stderr)
    );
    let items = blocking(vec!["items", "--kind", "repository"])
        .await
        .unwrap();
    assert!(
        items.status.success(),
        "{}",
        String::from_utf8_lossy(&items.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("items.jsonl");
    std::fs::write(&input, &items.stdout).unwrap();
    let mapping = format!(
        "{}/../shared/defaults/port-app-config.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mapped = Command::new(BIN)
        .args([
            "map",
            "--mapping",
            &mapping,
            "--kind",
            "repository",
            "--input",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        mapped.status.success(),
        "{}",
        String::from_utf8_lossy(&mapped.stderr)
    );
    let mapped: std::collections::BTreeMap<String, Value> = String::from_utf8_lossy(&mapped.stdout)
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            let id = e["identifier"].as_str().unwrap().to_owned();
            (id, json_of(&e["title"], &e["properties"], &e["relations"]))
        })
        .collect();
    let written: std::collections::BTreeMap<String, Value> = sim
        .catalog
        .store()
        .list(Some("azureDevopsRepository"))
        .unwrap()
        .into_iter()
        .map(|e| {
            let title = e.title.map(Value::String).unwrap_or(Value::Null);
            let props = Value::Object(e.properties);
            let rels = Value::Object(e.relations);
            (e.identifier, json_of(&title, &props, &rels))
        })
        .collect();
    assert!(!written.is_empty());
    assert_eq!(mapped, written);

    // --limit and --project narrow the listing; an unknown kind names the known ones.
    let two = blocking(vec!["items", "--kind", "work-item", "--limit", "2"])
        .await
        .unwrap();
    assert!(
        two.status.success(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&two.stdout).lines().count(), 2);
    let project = sim.ado.project_ids()[0].clone();
    let one_project: &'static str = Box::leak(project.clone().into_boxed_str());
    let only = blocking(vec![
        "items",
        "--kind",
        "repository",
        "--project",
        one_project,
    ])
    .await
    .unwrap();
    let repos: Vec<Value> = String::from_utf8_lossy(&only.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!repos.is_empty());
    assert!(
        repos.iter().all(|r| r["project"]["id"] == project.as_str()),
        "{repos:?}"
    );
    let unknown = blocking(vec!["items", "--kind", "work-items"])
        .await
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("work-item,"));
    sim.stop().await;
}

fn json_of(title: &Value, properties: &Value, relations: &Value) -> Value {
    serde_json::json!({
        "title": title,
        "properties": without_nulls(properties),
        "relations": without_nulls(relations),
    })
}

#[test]
fn with_log_format_json_every_line_on_stderr_is_json_and_uncoloured() {
    let sim = start_sim();
    let out = resync_against_with(&sim, &[], &[("LOG_FORMAT", "json")]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "block finished" && l["kind"] == "work-item"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no colour codes off a terminal");
}

/// `ado-sync tenants … --tenants-db FILE`: the admin commands against a SQLite registry.
fn tenants(db: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("tenants")
        .arg("--tenants-db")
        .arg(db)
        .args(args)
        .env_remove("TENANTS_TABLE")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tenants_are_added_once_shown_without_secrets_rotated_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tenants.db");
    let add = [
        "add",
        "--id",
        "acme",
        "--catalog-client-id",
        "env:ACME_CLIENT_ID",
        "--catalog-client-secret",
        "/acme/catalog-secret",
        "--org",
        "https://dev.azure.com/acme",
        "--org",
        "https://dev.azure.com/acme-labs",
        "--sp-client-id",
        "app-id",
        "--sp-tenant-id",
        "contoso.onmicrosoft.com",
        "--sp-client-secret",
        "env:ACME_SP_SECRET",
        "--generate-webhook-secret",
        "--public-url",
        "https://hooks.example.com/",
    ];
    let (code, out, err) = tenants(&db, &add);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("webhook URL:      https://hooks.example.com/t/acme/webhook"),
        "{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("webhook secret:   "))
        .unwrap()
        .to_owned();
    assert!(secret.len() >= 43, "{secret}");

    let (code, _, err) = tenants(&db, &add);
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");

    let (code, shown, _) = tenants(&db, &["show", "acme"]);
    assert_eq!(code, Some(0));
    assert!(
        !shown.contains(&secret),
        "the secret is never stored or shown again"
    );
    let record: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(record["webhook"]["secret"]["type"], "hash");
    assert_eq!(record["organizations"].as_array().unwrap().len(), 2);
    assert_eq!(
        record["organizations"][1]["auth"]["type"],
        "service-principal"
    );

    let (code, out, _) = tenants(&db, &["rotate-webhook-secret", "acme"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains(&secret), "a new secret: {out}");
    let (_, after, _) = tenants(&db, &["show", "acme"]);
    assert_ne!(after, shown, "the stored hash changed");

    let (code, listed, _) = tenants(&db, &["list"]);
    assert_eq!(code, Some(0));
    assert!(listed.starts_with("acme "), "{listed}");

    assert_eq!(tenants(&db, &["remove", "acme"]).0, Some(0));
    let (code, _, err) = tenants(&db, &["remove", "acme"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no tenant acme"), "{err}");
}

#[test]
fn a_secret_value_where_a_reference_belongs_is_refused_without_being_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tenants.db");
    let (code, out, err) = tenants(
        &db,
        &[
            "add",
            "--id",
            "acme",
            "--catalog-client-id",
            "env:ID",
            "--catalog-client-secret",
            "pasted-secret-value",
            "--org",
            "https://dev.azure.com/acme",
            "--pat",
            "env:PAT",
            "--generate-webhook-secret",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--catalog-client-secret: not a secret reference"),
        "{err}"
    );
    assert!(!err.contains("pasted-secret-value") && !out.contains("pasted-secret-value"));
    let (code, _, err) = tenants(
        &db,
        &[
            "add",
            "--id",
            "Bad/Id",
            "--catalog-client-id",
            "env:A",
            "--catalog-client-secret",
            "env:B",
            "--org",
            "https://dev.azure.com/x",
            "--pat",
            "env:P",
            "--generate-webhook-secret",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(tenants(&db, &["list"]).1.trim(), "no tenants");
}
