//! Azure DevOps Server: the kinds built on services it does not have (Graph, entitlements, Advanced
//! Security) end as "not available", found out with one request, and the first-start default mapping
//! leaves them out.

use std::collections::BTreeMap;

use shared::ado::AdoError;
use shared::ado::kinds::Deployment;
use shared::tenant::{Tenant, integration_record_for};
use sim::ado::{AdoSimOptions, Flavour, OrgSpec};

use crate::helpers::settings_for;
use crate::kinds_proof::{context, fetch, start};

fn server() -> AdoSimOptions {
    AdoSimOptions {
        flavour: Flavour::Server,
        ..Default::default()
    }
}

/// Requests per route made since `before`.
fn since(sim: &sim::RunningSim, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    sim.ado
        .request_counts()
        .into_iter()
        .map(|(k, n)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn on(counts: &BTreeMap<String, u64>, route: &str) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.ends_with(route))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn on_azure_devops_server_the_graph_entitlement_and_security_kinds_are_not_available() {
    let sim = start(OrgSpec::small(), server()).await;
    for (kind, options, route) in [
        ("user", "", " /_apis/userentitlements"),
        ("user", "      source: graph\n", " /_apis/graph/users"),
        ("group", "", " /_apis/graph/groups"),
        ("group-member", "", " /_apis/graph/groups"),
        (
            "advanced-security-alert",
            "",
            "/_apis/alert/repositories/{repositoryId}/alerts",
        ),
    ] {
        let before = sim.ado.request_counts();
        let e = fetch(&context(&sim), kind, options)
            .await
            .expect_err("the kind cannot be listed on Server");
        assert!(matches!(e, AdoError::NotAvailable(_)), "{kind}: {e}");
        assert!(e.to_string().contains("Azure DevOps Server"), "{kind}: {e}");
        let made = since(&sim, &before);
        assert_eq!(
            on(&made, route),
            1,
            "{kind}: one request finds out: {made:?}"
        );
    }
}

#[tokio::test]
async fn advanced_security_is_found_missing_on_the_first_repository_without_asking_the_others() {
    let sim = start(OrgSpec::small(), server()).await;
    let e = fetch(&context(&sim), "advanced-security-alert", "")
        .await
        .unwrap_err();
    assert!(matches!(e, AdoError::NotAvailable(_)), "{e}");
    let made = sim.ado.request_counts();
    assert_eq!(
        on(&made, "/_apis/alert/repositories/{repositoryId}/alerts"),
        1
    );
    // The repository is read again, to tell a server without the API from a repository that is gone.
    assert_eq!(
        on(
            &made,
            "GET /{project}/_apis/git/repositories/{repositoryId}"
        ),
        1
    );
}

#[tokio::test]
async fn on_azure_devops_services_the_same_kinds_list() {
    let sim = start(OrgSpec::small(), Default::default()).await;
    for (kind, options) in [
        ("user", ""),
        ("user", "      source: graph\n"),
        ("group", ""),
        ("group-member", ""),
        ("advanced-security-alert", ""),
    ] {
        let items = fetch(&context(&sim), kind, options)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(!items.is_empty(), "{kind}");
    }
}

fn kinds_of(runtime: &Tenant) -> Vec<String> {
    runtime
        .mapping_source
        .last()
        .resources()
        .iter()
        .map(|r| r.kind().to_owned())
        .collect()
}

fn kinds_in(record: &serde_json::Value) -> Vec<String> {
    record["config"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// A first start (no integration record yet) with `INITIALIZE_PORT_RESOURCES`: the mapping the runtime
/// uses and the integration record it creates.
async fn first_start(sim: &sim::RunningSim) -> (Vec<String>, serde_json::Value) {
    let settings = settings_for(sim, &[("INITIALIZE_PORT_RESOURCES", "true".into())]);
    let runtime = Tenant::start(settings).await.expect("runtime");
    runtime
        .initialize()
        .await
        .expect("on")
        .expect("initialized");
    let record = sim
        .catalog
        .store()
        .integration("e2e")
        .unwrap()
        .expect("the integration record");
    (kinds_of(&runtime), record)
}

#[tokio::test]
async fn the_first_start_default_on_azure_devops_server_is_the_server_mapping() {
    let sim = start(OrgSpec::small(), server()).await;
    let (kinds, record) = first_start(&sim).await;
    let expected = integration_record_for(Deployment::Server).unwrap();
    assert_eq!(record["config"], expected["config"]);
    assert_eq!(kinds, kinds_in(&expected));
    for lacking in ["user", "group", "group-member", "advanced-security-alert"] {
        assert!(
            !kinds.iter().any(|k| k == lacking),
            "{lacking} in {kinds:?}"
        );
    }
    assert!(on(&sim.ado.request_counts(), "/_apis/connectionData") >= 1);
}

#[tokio::test]
async fn the_first_start_default_on_azure_devops_services_is_the_full_mapping() {
    let sim = start(OrgSpec::small(), Default::default()).await;
    let (kinds, record) = first_start(&sim).await;
    let expected = integration_record_for(Deployment::Services).unwrap();
    assert_eq!(record["config"], expected["config"]);
    assert_eq!(kinds, kinds_in(&expected));
    assert!(kinds.iter().any(|k| k == "advanced-security-alert"));
}

#[tokio::test]
async fn a_server_url_whose_connection_data_fails_is_taken_for_azure_devops_server() {
    let sim = start(OrgSpec::small(), Default::default()).await;
    sim.ado.fail_requests("/_apis/connectionData", 500, None);
    let (kinds, _) = first_start(&sim).await;
    assert_eq!(
        kinds,
        kinds_in(&integration_record_for(Deployment::Server).unwrap())
    );
}
