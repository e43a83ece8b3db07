//! The fault matrix: a resync of the small simulated organisation (the shipped mapping, all 29 kinds)
//! against a simulator that fails like the real services, at each listing route and at several points
//! of the catalog's side of a pass.
//!
//! Every row runs the same story: a clean pass fills the catalog, one stale entity per blueprint is
//! added (what a pass *could* delete), then the faulty pass runs. Every row checks that the pass ends
//! (a hang guard), that nothing that still exists was deleted, and that no stale entity was deleted
//! in a blueprint one of whose blocks did not complete: a block that met the fault, or that reported
//! an error. Where the fault outlives the retries the pass must fail and its report name the route;
//! where the retries absorb it (a short burst) the pass must succeed and delete exactly the stale
//! entities.
//!
//! Which blocks a route feeds is learnt, not written down: each block of the mapping is run alone once
//! and the routes it calls are recorded (see [`block_routes`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use shared::resync::{Quiet, RunReport};
use shared::tenant::{DEFAULT_MAPPING, Tenant};
use sim::ado::{Fault, FaultAction};
use sim::catalog::FaultAction as CatalogFault;

use crate::helpers::{Contents, Setup, TestOrg, catalog_contents, port_client, runtime_for};

/// A pass of the small org takes about a second; with every request to a route timing out (2 s, one
/// retry) it should take seconds more. A pass still running after this is a hang.
const GUARD: Duration = Duration::from_secs(60);
/// The faulty pass's Azure DevOps client: a short timeout and one retry, so a row takes seconds.
const ADO_TIMEOUT_SECS: u64 = 2;
const ADO_MAX_RETRIES: u32 = 1;
/// A slow answer: well past the timeout above.
const SLOW: Duration = Duration::from_secs(6);
/// The catalog client of every pass: a short timeout and two retries.
const PORT_TIMEOUT: Duration = Duration::from_secs(5);
const PORT_MAX_RETRIES: u32 = 2;
/// Rows run at once within one test (each test is a table; the harness runs tests in parallel too).
const ROWS_AT_ONCE: usize = 2;

fn faulty_env() -> Vec<(&'static str, String)> {
    vec![
        ("ADO_TIMEOUT_SECS", ADO_TIMEOUT_SECS.to_string()),
        ("ADO_MAX_RETRIES", ADO_MAX_RETRIES.to_string()),
    ]
}

// ------------------------------------------------------------------ the routes and what they feed

/// One listing route: as a fault matches it (a substring of the request's path and query) and as the
/// simulator counts it (a substring of the `"METHOD /route-template"` key; the whole key when it
/// ends in `$`). The two differ only where a path is a prefix of other routes' paths.
struct Route {
    path: &'static str,
    counted: &'static str,
}

impl Route {
    fn counts(&self, key: &str) -> bool {
        match self.counted.strip_suffix('$') {
            Some(whole) => key == whole,
            None => key.contains(self.counted),
        }
    }

    /// What a report must mention to name this route: the path without its leading `/` and query.
    fn named(&self) -> &'static str {
        self.path.trim_start_matches('/').trim_end_matches('?')
    }
}

const fn route(path: &'static str) -> Route {
    Route {
        path,
        counted: path,
    }
}

/// A class of listing routes. Each route fails alone in its row: a pass that fails for one route of a
/// class cannot hide that another route's failure is read as "nothing there".
struct Listing {
    name: &'static str,
    routes: &'static [Route],
}

/// The organisation's project list, which every pass reads before its blocks start.
const PROJECT_LIST: Route = Route {
    path: "/_apis/projects?",
    counted: "GET /_apis/projects$",
};

const LISTINGS: &[Listing] = &[
    Listing {
        name: "projects",
        routes: &[PROJECT_LIST],
    },
    Listing {
        name: "repositories",
        routes: &[Route {
            path: "/_apis/git/repositories?",
            counted: "GET /{project}/_apis/git/repositories$",
        }],
    },
    Listing {
        name: "refs",
        routes: &[route("/refs")],
    },
    Listing {
        name: "pull requests",
        routes: &[route("/pullrequests")],
    },
    Listing {
        name: "pipelines, runs and timelines",
        routes: &[route("/_apis/pipelines"), route("/timeline")],
    },
    Listing {
        name: "releases",
        routes: &[route("/_apis/release/")],
    },
    Listing {
        name: "work items",
        routes: &[route("/_apis/wit/")],
    },
    Listing {
        name: "teams and iterations",
        routes: &[route("/teams"), route("/iterations")],
    },
    Listing {
        name: "graph and entitlements",
        routes: &[route("/_apis/graph/"), route("/userentitlements")],
    },
    Listing {
        name: "wiki",
        routes: &[route("/_apis/wiki/")],
    },
    Listing {
        name: "items",
        routes: &[route("/items")],
    },
];

/// The Azure DevOps routes (count keys) each block of the shipped mapping calls, by block index: each
/// block run alone against its own simulator. Learnt once per test binary.
async fn block_routes() -> &'static [BTreeSet<String>] {
    static ROUTES: tokio::sync::OnceCell<Vec<BTreeSet<String>>> =
        tokio::sync::OnceCell::const_new();
    ROUTES
        .get_or_init(|| async {
            let doc: serde_json::Value =
                serde_saphyr::from_str(DEFAULT_MAPPING).expect("the shipped mapping is YAML");
            let blocks = doc["resources"].as_array().expect("resources").clone();
            let probes = blocks.into_iter().enumerate().map(|(i, block)| {
                let mut alone = doc.clone();
                alone["resources"] = serde_json::Value::Array(vec![block]);
                // JSON is YAML: the mapping loader reads it as it reads the shipped file.
                let mapping = serde_json::to_string(&alone).expect("JSON");
                async move {
                    let org = Setup {
                        mapping: &mapping,
                        ..Default::default()
                    }
                    .start()
                    .await;
                    let report = guarded(org.runtime.resync(&Quiet))
                        .await
                        .unwrap_or_else(|e| panic!("block {i} alone: {e}"));
                    assert!(report.succeeded(), "block {i} alone: {}", report.render());
                    let mut routes: BTreeSet<String> =
                        org.sim.ado.request_counts().into_keys().collect();
                    // Every pass reads the project list first, whether its blocks need it or not: a
                    // block that still completes when that list fails does not depend on it.
                    org.sim.ado.fail_requests(PROJECT_LIST.path, 404, None);
                    let without = guarded(org.runtime.resync(&Quiet))
                        .await
                        .unwrap_or_else(|e| panic!("block {i} alone: {e}"));
                    if without.succeeded() {
                        routes.retain(|k| !PROJECT_LIST.counts(k));
                    }
                    (i, routes)
                }
            });
            let mut found: Vec<(usize, BTreeSet<String>)> = futures::stream::iter(probes)
                .buffer_unordered(4)
                .collect()
                .await;
            found.sort_by_key(|(i, _)| *i);
            found.into_iter().map(|(_, routes)| routes).collect()
        })
        .await
}

/// The blocks (by index) that call any of `routes`.
async fn blocks_calling(routes: &[Route]) -> BTreeSet<usize> {
    block_routes()
        .await
        .iter()
        .enumerate()
        .filter(|(_, called)| called.iter().any(|k| routes.iter().any(|r| r.counts(k))))
        .map(|(i, _)| i)
        .collect()
}

// ------------------------------------------------------------------ a prepared organisation

async fn guarded<T>(pass: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(GUARD, pass)
        .await
        .map_err(|_| format!("the pass did not end within {}s", GUARD.as_secs()))
}

/// The small org after a clean pass, with one stale entity per blueprint.
struct Prepared {
    org: TestOrg,
    /// The faulty pass's runtime: short Azure DevOps timeouts.
    faulty: Tenant,
    /// The blueprint each block writes, by block index.
    blueprints: Vec<String>,
    /// Catalog contents before the faulty pass, stale entities included.
    before: Contents,
    /// The stale entity of each blueprint.
    stale: BTreeMap<String, String>,
    /// Azure DevOps requests of the clean pass, per count key.
    clean_requests: BTreeMap<String, u64>,
}

const BULK_UPSERT: &str = "POST /v1/blueprints/{bp}/entities/bulk";

async fn prepare() -> Result<Prepared, String> {
    let mut org = Setup {
        mapping: DEFAULT_MAPPING,
        ..Default::default()
    }
    .start()
    .await;
    let catalog = port_client(&org.sim, PORT_TIMEOUT, PORT_MAX_RETRIES);
    org.runtime.catalog = catalog.clone();
    let clean = guarded(org.runtime.resync(&Quiet)).await?;
    if !clean.succeeded() {
        return Err(format!("the clean pass failed:\n{}", clean.render()));
    }
    let unversioned = org.sim.ado.requests_without_api_version();
    if !unversioned.is_empty() {
        return Err(format!("requests without api-version: {unversioned:?}"));
    }
    let mut faulty = runtime_for(&org.sim, DEFAULT_MAPPING, &faulty_env());
    faulty.catalog = catalog;
    let blueprints = faulty
        .mapping_source
        .last()
        .config()
        .resources
        .iter()
        .map(|r| serde_json::from_str::<String>(r.port.entity.blueprint.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the shipped mapping names its blueprints literally: {e}"))?;

    let store = org.sim.catalog.store();
    let mut stale = BTreeMap::new();
    for blueprint in blueprints.iter().collect::<BTreeSet<_>>() {
        let entities = store.list(Some(blueprint)).map_err(|e| e.to_string())?;
        let Some(model) = entities.first() else {
            return Err(format!("the clean pass wrote no {blueprint}"));
        };
        let mut copy = model.to_entity();
        let id = format!("{}-stale", model.identifier);
        copy.identifier = json!(id);
        // Owned by this integration and last written before the faulty pass: a deletion candidate.
        store
            .upsert(&copy, &model.datasource, false, true, model.updated_at)
            .map_err(|e| e.to_string())?;
        stale.insert(blueprint.clone(), id);
    }
    Ok(Prepared {
        clean_requests: org.sim.ado.request_counts(),
        before: catalog_contents(&org.sim),
        org,
        faulty,
        blueprints,
        stale,
    })
}

impl Prepared {
    /// Retitles one titled entity in three of every blueprint, so the faulty pass has writes to make
    /// in every blueprint; returns the original titles by (blueprint, identifier). Not all of them:
    /// the deletion threshold is a share of the owned entities the pass did not rewrite.
    fn outdate(&self) -> Result<BTreeMap<(String, String), String>, String> {
        let store = self.org.sim.catalog.store();
        let mut originals = BTreeMap::new();
        let entities = store.list(None).map_err(|e| e.to_string())?;
        for e in entities.iter().step_by(3) {
            if self.stale.get(&e.blueprint) == Some(&e.identifier) {
                continue;
            }
            let Some(title) = e.title.clone() else {
                continue;
            };
            let mut changed = e.to_entity();
            changed.title = Some(json!(format!("outdated: {title}")));
            store
                .upsert(&changed, &e.datasource, false, true, e.updated_at)
                .map_err(|e| e.to_string())?;
            originals.insert((e.blueprint.clone(), e.identifier.clone()), title);
        }
        Ok(originals)
    }

    /// The blueprints some block of which is in `blocks` or reported an error.
    fn unfinished(&self, blocks: &BTreeSet<usize>, report: &RunReport) -> BTreeSet<String> {
        self.blueprints
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                blocks.contains(i) || report.kinds.iter().any(|k| k.index == *i && k.errors > 0)
            })
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// What every row asserts of the catalog after the faulty pass: nothing that exists was deleted,
    /// and no stale entity of an `unfinished` blueprint.
    fn check_deletions(
        &self,
        unfinished: &BTreeSet<String>,
        problems: &mut Vec<String>,
    ) -> Contents {
        let after = catalog_contents(&self.org.sim);
        let empty = BTreeSet::new();
        for (blueprint, ids) in &self.before {
            let now = after.get(blueprint).unwrap_or(&empty);
            let stale = self.stale.get(blueprint);
            let gone: Vec<&String> = ids.difference(now).collect();
            let real: Vec<&&String> = gone.iter().filter(|id| Some(**id) != stale).collect();
            if !real.is_empty() {
                problems.push(format!(
                    "{blueprint}: entities that still exist were deleted: {real:?}"
                ));
            }
            if unfinished.contains(blueprint) && stale.is_some_and(|s| !now.contains(s)) {
                problems.push(format!(
                    "{blueprint}: its stale entity was deleted although a block feeding it did not complete"
                ));
            }
        }
        after
    }

    /// A pass that must have succeeded: every stale entity gone, everything else kept.
    fn check_clean(&self, report: &RunReport, after: &Contents, problems: &mut Vec<String>) {
        if !report.succeeded() {
            problems.push(format!(
                "the retries should have absorbed the fault, but the pass failed:\n{}",
                report.render()
            ));
        }
        let kept: Vec<&String> = self
            .stale
            .iter()
            .filter(|(blueprint, stale)| {
                after
                    .get(*blueprint)
                    .is_some_and(|ids| ids.contains(*stale))
            })
            .map(|(blueprint, _)| blueprint)
            .collect();
        if !kept.is_empty() {
            problems.push(format!(
                "stale entities were kept in {kept:?}; deletion: {}",
                report.deletion.describe()
            ));
        }
    }
}

/// Every message of a report, its deletion's included.
fn messages(report: &RunReport) -> Vec<String> {
    report
        .kinds
        .iter()
        .flat_map(|k| k.messages.iter().map(move |m| format!("{}: {m}", k.kind)))
        .chain([report.deletion.describe()])
        .collect()
}

/// Runs rows, a few at a time, and fails once at the end with every row that went wrong.
async fn run_table<F, Fut>(rows: Vec<(String, F)>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let total = rows.len();
    let failed: Vec<String> = futures::stream::iter(rows)
        .map(|(name, row)| async move {
            let problems = row().await;
            (!problems.is_empty()).then(|| format!("[{name}]\n  {}", problems.join("\n  ")))
        })
        .buffer_unordered(ROWS_AT_ONCE)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    assert!(
        failed.is_empty(),
        "{} of {total} rows failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ------------------------------------------------------------------ Azure DevOps rows

/// A fault on every route of a listing class; the ones not said to be short last the whole pass.
#[derive(Clone, Copy)]
enum AdoFault {
    NotFound,
    /// One 500, then answers: the retries absorb it.
    ServerErrorBurst,
    /// The connection dropped before any answer.
    Reset,
    /// One 429 with `retry-after`, then answers: the retries absorb it.
    ThrottledBurst,
    /// Answers slower than the client's timeout.
    Slow,
}

impl AdoFault {
    fn fault(self, path: &str) -> Fault<FaultAction> {
        match self {
            AdoFault::NotFound => Fault::new(path, FaultAction::Status(404)),
            AdoFault::ServerErrorBurst => Fault::new(path, FaultAction::Status(500)).times(1),
            AdoFault::Reset => Fault::new(path, FaultAction::Reset),
            AdoFault::ThrottledBurst => Fault::new(path, FaultAction::Status(429)).times(1),
            AdoFault::Slow => Fault::new(path, FaultAction::Slow(SLOW)),
        }
    }

    fn absorbed(self) -> bool {
        matches!(self, AdoFault::ServerErrorBurst | AdoFault::ThrottledBurst)
    }
}

async fn ado_row(route: &'static Route, fault: AdoFault) -> Vec<String> {
    let mut problems = Vec::new();
    let affected = blocks_calling(std::slice::from_ref(route)).await;
    if affected.is_empty() {
        return vec!["no block of the shipped mapping calls this route".into()];
    }
    let prepared = match prepare().await {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    prepared.org.sim.ado.inject(fault.fault(route.path));
    let report = match guarded(prepared.faulty.resync(&Quiet)).await {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    prepared.org.sim.ado.clear_faults();
    let in_class = |counts: &BTreeMap<String, u64>| -> u64 {
        counts
            .iter()
            .filter(|(k, _)| route.counts(k))
            .map(|(_, n)| n)
            .sum()
    };
    let clean = in_class(&prepared.clean_requests);
    let faulty = in_class(&prepared.org.sim.ado.request_counts()) - clean;

    if fault.absorbed() {
        let after = prepared.check_deletions(&BTreeSet::new(), &mut problems);
        prepared.check_clean(&report, &after, &mut problems);
        // Only a pass that succeeded can hide a fault that never fired.
        if report.succeeded() && faulty <= clean {
            problems.push(format!(
                "the fault never fired: {faulty} requests to the route, {clean} in the clean pass"
            ));
        }
    } else {
        prepared.check_deletions(&prepared.unfinished(&affected, &report), &mut problems);
        if report.succeeded() {
            problems.push("the fault outlived the retries, yet the pass succeeded".into());
        }
        let named = report
            .kinds
            .iter()
            .filter(|k| affected.contains(&k.index) && k.errors > 0)
            .flat_map(|k| &k.messages)
            .any(|m| m.to_string().contains(route.named()));
        if !named {
            problems.push(format!(
                "no error of an affected block names the route; messages: {:#?}",
                messages(&report)
            ));
        }
    }
    problems
}

async fn ado_table(fault: AdoFault) {
    run_table(
        LISTINGS
            .iter()
            .flat_map(|listing| {
                listing.routes.iter().map(move |route| {
                    let name = if listing.routes.len() == 1 {
                        listing.name.to_owned()
                    } else {
                        format!("{}: {}", listing.name, route.path)
                    };
                    (name, move || ado_row(route, fault))
                })
            })
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn a_404_on_any_listing_fails_the_pass_and_deletes_nothing_the_listing_feeds() {
    ado_table(AdoFault::NotFound).await;
}

#[tokio::test]
async fn a_single_500_on_any_listing_is_retried_and_the_pass_deletes_exactly_the_stale() {
    ado_table(AdoFault::ServerErrorBurst).await;
}

#[tokio::test]
async fn a_dropped_connection_on_any_listing_fails_the_pass_and_deletes_nothing_it_feeds() {
    ado_table(AdoFault::Reset).await;
}

#[tokio::test]
async fn a_single_429_on_any_listing_is_waited_out_and_the_pass_deletes_exactly_the_stale() {
    ado_table(AdoFault::ThrottledBurst).await;
}

#[tokio::test]
async fn a_listing_slower_than_the_timeout_fails_the_pass_in_bounded_time_deleting_nothing_it_feeds()
 {
    ado_table(AdoFault::Slow).await;
}

// ------------------------------------------------------------------ catalog rows

/// Where in a pass a catalog fault starts.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// The first bulk upsert.
    Early,
    /// A third of the way through the bulk upserts.
    Mid,
    /// The deletion of stale entities.
    Deletion,
}

const BULK_DELETE: &str = "POST /v1/blueprints/{bp}/bulk/entities/delete";

impl Point {
    /// The fault, and the route (count key) it hits with the requests let through before it.
    /// `outdated` are the entities the pass has to write.
    fn fault(
        self,
        outdated: &BTreeMap<(String, String), String>,
        action: CatalogFault,
    ) -> (Fault<CatalogFault>, &'static str, u64) {
        match self {
            Point::Early => (Fault::new("/entities/bulk", action), BULK_UPSERT, 0),
            Point::Mid => {
                // The fewest bulk upserts those writes can take (20 entities each, one blueprint
                // each); a third of that is well inside the pass.
                let mut per_blueprint: BTreeMap<&str, u64> = BTreeMap::new();
                for (blueprint, _) in outdated.keys() {
                    *per_blueprint.entry(blueprint).or_default() += 1;
                }
                let fewest: u64 = per_blueprint.values().map(|n| n.div_ceil(20)).sum();
                let after = fewest / 3;
                (
                    Fault::new("/entities/bulk", action)
                        .after(u32::try_from(after).unwrap_or(u32::MAX)),
                    BULK_UPSERT,
                    after,
                )
            }
            Point::Deletion => (Fault::new("/bulk/entities/delete", action), BULK_DELETE, 0),
        }
    }
}

async fn catalog_row(
    point: Point,
    action: CatalogFault,
    times: Option<u32>,
    absorbed: bool,
    names: &'static str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let prepared = match prepare().await {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let originals = match prepared.outdate() {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let (fault, route, let_through) = point.fault(&originals, action);
    prepared.org.sim.catalog.inject(Fault { times, ..fault });
    let sent_before = prepared.org.sim.catalog.request_count(route);
    let report = match guarded(prepared.faulty.resync(&Quiet)).await {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    prepared.org.sim.catalog.clear_faults();
    let store = prepared.org.sim.catalog.store();
    // A write that did not land leaves its entity outdated: ground truth of an unfinished blueprint,
    // whatever the report says.
    let outdated: BTreeSet<String> = originals
        .iter()
        .filter(|((bp, id), original)| {
            store
                .get(bp, id)
                .ok()
                .flatten()
                .is_some_and(|e| e.title.as_deref() != Some(original.as_str()))
        })
        .map(|((bp, _), _)| bp.clone())
        .collect();
    let unfinished: BTreeSet<String> = prepared
        .unfinished(&BTreeSet::new(), &report)
        .union(&outdated)
        .cloned()
        .collect();
    let after = prepared.check_deletions(&unfinished, &mut problems);
    let sent = prepared.org.sim.catalog.request_count(route) - sent_before;
    if sent <= let_through {
        problems.push(format!(
            "the fault never fired: {sent} requests to {route}, the fault starts after {let_through}"
        ));
    }
    if absorbed {
        prepared.check_clean(&report, &after, &mut problems);
        if !outdated.is_empty() {
            problems.push(format!("writes did not land in {outdated:?}"));
        }
    } else {
        if report.succeeded() {
            problems.push("the fault outlived the retries, yet the pass succeeded".into());
        }
        if !messages(&report).iter().any(|m| m.contains(names)) {
            problems.push(format!(
                "no message names the failure ({names:?}); messages: {:#?}",
                messages(&report)
            ));
        }
    }
    problems
}

type CatalogRow = (Point, CatalogFault, Option<u32>, bool, &'static str);

async fn catalog_table(rows: Vec<CatalogRow>) {
    run_table(
        rows.into_iter()
            .map(|(point, action, times, absorbed, names)| {
                (format!("{action:?} at {point:?}"), move || {
                    catalog_row(point, action, times, absorbed, names)
                })
            })
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn a_short_503_burst_from_the_catalog_is_retried_early_mid_pass_and_during_deletion() {
    let burst = Some(PORT_MAX_RETRIES);
    catalog_table(
        [Point::Early, Point::Mid, Point::Deletion]
            .into_iter()
            .map(|p| (p, CatalogFault::Status(503), burst, true, ""))
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn a_catalog_that_drops_connections_fails_the_pass_and_deletes_nothing_it_could_not_write() {
    catalog_table(vec![
        (Point::Early, CatalogFault::Reset, None, false, "bulk"),
        (Point::Mid, CatalogFault::Reset, None, false, "bulk"),
        (Point::Deletion, CatalogFault::Reset, None, false, "delete"),
    ])
    .await;
}

#[tokio::test]
async fn a_413_from_the_catalog_falls_back_to_single_upserts_and_the_pass_succeeds() {
    catalog_table(vec![
        (Point::Early, CatalogFault::Status(413), None, true, ""),
        (Point::Mid, CatalogFault::Status(413), None, true, ""),
    ])
    .await;
}

#[tokio::test]
async fn one_entity_refused_with_422_fails_the_pass_and_keeps_its_blueprints_stale_entity() {
    let refuse = || CatalogFault::RejectEntity(None);
    catalog_table(vec![
        (Point::Early, refuse(), Some(1), false, "422"),
        (Point::Mid, refuse(), Some(1), false, "422"),
    ])
    .await;
}

#[tokio::test]
async fn expired_catalog_tokens_are_renewed_early_mid_pass_and_during_deletion() {
    catalog_table(
        [Point::Early, Point::Mid, Point::Deletion]
            .into_iter()
            .map(|p| (p, CatalogFault::ExpireTokens, Some(1), true, ""))
            .collect(),
    )
    .await;
}

// ------------------------------------------------------------------ the command

/// `ado-sync resync`, the binary, against the simulator with the fault injected over `/_sim`.
#[tokio::test]
async fn the_resync_command_exits_1_when_a_listing_fails_for_good_and_deletes_nothing_it_feeds() {
    let binary = crate::helpers::ado_sync_binary();
    let listing = LISTINGS
        .iter()
        .find(|l| l.name == "pull requests")
        .expect("the pull-request listing");
    let affected = blocks_calling(listing.routes).await;
    let prepared = prepare().await.unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::new();
    let control = format!("http://{}/_sim/faults", prepared.org.sim.addr);
    let injected = http
        .post(&control)
        .json(
            &json!({"path_contains": "/pullrequests", "method": "GET", "action": {"status": 404}}),
        )
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(injected.status(), 204);

    let mut command = tokio::process::Command::new(binary);
    command
        .args(["resync", "--json"])
        .env_clear()
        .envs(prepared.org.sim.settings_env())
        .env("INTEGRATION_IDENTIFIER", "e2e")
        .env("INITIALIZE_PORT_RESOURCES", "false")
        .env("ADO_TIMEOUT_SECS", ADO_TIMEOUT_SECS.to_string())
        .env("ADO_MAX_RETRIES", ADO_MAX_RETRIES.to_string())
        .kill_on_drop(true);
    let out = guarded(command.output())
        .await
        .unwrap_or_else(|e| panic!("ado-sync resync: {e}"))
        .expect("ado-sync runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the report is JSON ({e}); stderr: {stderr}"));
    let kinds = report["kinds"].as_array().expect("kinds");
    let named = kinds
        .iter()
        .filter(|k| k["errors"].as_u64().unwrap_or(0) > 0)
        .flat_map(|k| k["messages"].as_array().into_iter().flatten())
        .any(|m| m.as_str().is_some_and(|m| m.contains("pullrequests")));
    assert!(named, "{report:#}");

    let failed: BTreeSet<usize> = kinds
        .iter()
        .filter(|k| k["errors"].as_u64().unwrap_or(0) > 0)
        .filter_map(|k| k["index"].as_u64().and_then(|i| usize::try_from(i).ok()))
        .collect();
    let unfinished: BTreeSet<String> = prepared
        .blueprints
        .iter()
        .enumerate()
        .filter(|(i, _)| affected.contains(i) || failed.contains(i))
        .map(|(_, b)| b.clone())
        .collect();
    let mut problems = Vec::new();
    prepared.check_deletions(&unfinished, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        prepared
            .org
            .sim
            .ado
            .requests_without_api_version()
            .is_empty(),
        "{:?}",
        prepared.org.sim.ado.requests_without_api_version()
    );
}
