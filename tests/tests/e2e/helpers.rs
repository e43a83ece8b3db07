//! Shared harness: a simulator (Azure DevOps + catalog server) on a free port, and a runtime pointed at it
//! through the same settings a deployment uses.

use std::collections::{BTreeSet, HashMap};

use lambda_runtime::{Context, LambdaEvent};
use resync_function::ResyncFailed;
use serde_json::Value;
use shared::config::Settings;
use shared::tenant::{Tenant, compile_mapping};
use sim::RunningSim;
use sim::ado::{AdoSimOptions, OrgSpec};

pub const ALL_KINDS: &str = include_str!("../../data/mapping-all-kinds.yaml");
pub const SCHEDULED_EVENT: &str = include_str!("../../../events/resync/scheduled.json");

pub struct TestOrg {
    pub sim: RunningSim,
    pub runtime: Tenant,
}

pub struct Setup<'a> {
    pub spec: OrgSpec,
    pub ado: AdoSimOptions,
    pub mapping: &'a str,
    pub env: Vec<(&'a str, String)>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            spec: OrgSpec::small(),
            ado: AdoSimOptions::default(),
            mapping: ALL_KINDS,
            env: Vec::new(),
        }
    }
}

impl Setup<'_> {
    pub async fn start(self) -> TestOrg {
        let sim = sim::start(
            "127.0.0.1:0".parse().unwrap(),
            self.spec,
            self.ado,
            Default::default(),
        )
        .await
        .expect("simulator starts");
        let runtime = runtime_for(&sim, self.mapping, &self.env);
        TestOrg { sim, runtime }
    }
}

/// A runtime configured exactly as a deployment would be: environment-style settings, the Port API client.
pub fn runtime_for(sim: &RunningSim, mapping: &str, extra: &[(&str, String)]) -> Tenant {
    let settings = settings_for(sim, extra);
    let mapping = compile_mapping(mapping, "test mapping", false).expect("mapping compiles");
    Tenant::with_mapping(settings, mapping).expect("runtime")
}

/// Settings pointed at the simulator. Creating the default blueprints is off unless `extra` turns it
/// on: most flows use their own mapping and assert on the catalog's requests.
pub fn settings_for(sim: &RunningSim, extra: &[(&str, String)]) -> Settings {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("ADO_ORG_URL".into(), sim.ado_org_url()),
        ("ADO_PAT".into(), "test-pat".into()),
        ("CATALOG_BASE_URL".into(), sim.catalog_base_url()),
        ("CATALOG_CLIENT_ID".into(), "client".into()),
        ("CATALOG_CLIENT_SECRET".into(), "secret".into()),
        ("INTEGRATION_IDENTIFIER".into(), "e2e".into()),
        ("ADO_MAX_RETRIES".into(), "2".into()),
        ("INITIALIZE_PORT_RESOURCES".into(), "false".into()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).to_owned(), v.clone());
    }
    Settings::from_lookup(|k| vars.get(k).cloned()).expect("settings")
}

impl TestOrg {
    /// One pass through the resync function's handler, with the sample scheduled event.
    pub async fn resync(&self) -> Result<Value, ResyncFailed> {
        let payload: Value = serde_json::from_str(SCHEDULED_EVENT).unwrap();
        resync_function::handle(&self.runtime, LambdaEvent::new(payload, Context::default())).await
    }

    /// The identifiers stored in the catalog server for a blueprint.
    pub fn catalog_ids(&self, blueprint: &str) -> BTreeSet<String> {
        self.sim
            .catalog
            .store()
            .list(Some(blueprint))
            .unwrap()
            .into_iter()
            .map(|e| e.identifier)
            .collect()
    }

    pub fn catalog_entity(
        &self,
        blueprint: &str,
        identifier: &str,
    ) -> Option<shared::catalog::Entity> {
        self.sim
            .catalog
            .store()
            .get(blueprint, identifier)
            .unwrap()
            .map(|s| s.to_entity())
    }

    /// The simulator's work items, as the test mapping identifies them.
    pub fn expected_work_items(&self) -> BTreeSet<String> {
        let ado = &self.sim.ado;
        ado.project_ids()
            .iter()
            .flat_map(|p| {
                ado.work_item_ids(p)
                    .into_iter()
                    .map(move |id| format!("{p}/{id}"))
            })
            .collect()
    }

    pub fn expected_repositories(&self) -> BTreeSet<String> {
        let ado = &self.sim.ado;
        ado.project_ids()
            .iter()
            .flat_map(|p| ado.repository_ids(p))
            .collect()
    }

    pub fn catalog_requests(&self, route_contains: &str) -> u64 {
        self.sim
            .catalog
            .request_counts()
            .iter()
            .filter(|(k, _)| k.contains(route_contains))
            .map(|(_, v)| v)
            .sum()
    }
}

/// The report a successful handler returned.
pub fn kind<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {report}"))
}

/// An SQS event sample from `events/processor/`.
pub fn sqs_event(sample: &str) -> aws_lambda_events::event::sqs::SqsEvent {
    serde_json::from_str(sample).expect("the sample is an SQS event")
}

/// The change message a record carries.
pub fn message_of(
    record: &aws_lambda_events::event::sqs::SqsMessage,
) -> shared::queue::message::ChangeMessage {
    serde_json::from_str(record.body.as_deref().unwrap()).expect("the body is a change message")
}

/// Replaces a record's body, keeping its group and deduplication ids consistent with the message.
pub fn set_message(
    record: &mut aws_lambda_events::event::sqs::SqsMessage,
    message: &shared::queue::message::ChangeMessage,
) {
    record.body = Some(serde_json::to_string(message).unwrap());
    record
        .attributes
        .insert("MessageGroupId".into(), message.group_id());
    record
        .attributes
        .insert("MessageDeduplicationId".into(), message.dedup_id());
}

/// The message ids a batch response reports as failed.
/// A received message as the event source mapping hands it to the processor.
pub fn as_sqs_record(m: &shared::queue::Received) -> aws_lambda_events::event::sqs::SqsMessage {
    use aws_lambda_events::event::sqs::SqsMessage;
    use shared::queue::ChangeMessage;
    let mut record = SqsMessage::default();
    record.message_id = Some(m.message_id.clone());
    record.receipt_handle = Some(m.receipt.clone());
    record.body = Some(m.body.clone());
    record.event_source = Some("aws:sqs".into());
    record.attributes.insert(
        "ApproximateReceiveCount".into(),
        m.receive_count.to_string(),
    );
    if let Ok(msg) = serde_json::from_str::<ChangeMessage>(&m.body) {
        record
            .attributes
            .insert("MessageGroupId".into(), msg.group_id());
    }
    record
}

pub fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

impl TestOrg {
    /// One invocation of the processor function's handler.
    pub async fn process(
        &self,
        event: aws_lambda_events::event::sqs::SqsEvent,
    ) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        processor_function::handle(&self.runtime, LambdaEvent::new(event, Context::default())).await
    }
}

/// A Port API client for the simulator's catalog with its own timeout and retries (the runtime's is
/// fixed at 60 s and 5 retries): fault tests put it in place of [`Tenant::catalog`].
pub fn port_client(
    sim: &RunningSim,
    timeout: std::time::Duration,
    max_retries: u32,
) -> std::sync::Arc<shared::catalog::port::PortClient> {
    let mut cfg = shared::catalog::port::PortConfig::new(
        "client",
        secrecy::SecretString::from("secret"),
        "e2e",
        shared::tenant::VERSION,
    );
    cfg.base_url = sim.catalog_base_url().parse().expect("the catalog URL");
    cfg.integration_type = shared::tenant::INTEGRATION_TYPE.to_owned();
    cfg.timeout = timeout;
    cfg.max_retries = max_retries;
    std::sync::Arc::new(shared::catalog::port::PortClient::new(cfg).expect("client"))
}

/// The catalog's identifiers per blueprint.
pub type Contents = std::collections::BTreeMap<String, BTreeSet<String>>;

/// Every blueprint's identifiers in the catalog server.
pub fn catalog_contents(sim: &RunningSim) -> Contents {
    let mut out = Contents::new();
    for e in sim.catalog.store().list(None).expect("the catalog lists") {
        out.entry(e.blueprint).or_default().insert(e.identifier);
    }
    out
}

/// The `ado-sync` binary next to this test binary: `cargo test --workspace` builds it; running this
/// package alone needs `cargo build -p ado-sync-cli` first. A binary older than a source it is made
/// from is refused, so a stale command is never what gets tested. (Building it from here would run a
/// nested cargo whose environment differs from the outer one, which invalidates the outer build.)
pub fn ado_sync_binary() -> std::path::PathBuf {
    use std::path::Path;
    use std::time::SystemTime;

    fn newest(path: &Path) -> SystemTime {
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match std::fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| newest(&e.path()))
                .fold(mtime, SystemTime::max),
            Err(_) => mtime,
        }
    }

    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/e2e-<hash>
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("a cargo target layout");
    let binary = profile.join(format!("ado-sync{}", std::env::consts::EXE_SUFFIX));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let inputs = [
        "cli/src",
        "cli/Cargo.toml",
        "shared/src",
        "shared/defaults",
        "shared/Cargo.toml",
        "sim/src",
        "sim/Cargo.toml",
    ];
    let sources = inputs
        .iter()
        .map(|p| newest(&root.join(p)))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    assert!(
        built.is_some_and(|b| b >= sources),
        "{} is missing or older than its sources: run `cargo build -p ado-sync-cli` (or the whole \
         workspace's tests) first",
        binary.display()
    );
    binary
}
