//! `/_sim/catalog/…`: the catalog simulator's controls for out-of-process tests (request counts,
//! faults, token expiry, action runs), beside the Azure DevOps side's `/_sim/…`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use serde_json::{Value, json};

use super::{CatalogSim, CatalogStats, Fault, FaultAction, NewActionRun};

type Sim = State<Arc<CatalogSim>>;

pub(super) fn routes(sim: &Arc<CatalogSim>) -> Router {
    Router::new()
        .route("/_sim/catalog/stats", get(stats))
        .route("/_sim/catalog/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/catalog/tokens/expire", post(expire_tokens))
        .route(
            "/_sim/catalog/actions/runs",
            get(action_runs).post(create_action_run),
        )
        .with_state(sim.clone())
}

async fn stats(State(sim): Sim) -> Json<CatalogStats> {
    Json(sim.stats())
}

async fn add_fault(State(sim): Sim, Json(fault): Json<Fault<FaultAction>>) -> StatusCode {
    sim.inject(fault);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): Sim) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(sim): Sim) -> StatusCode {
    sim.expire_tokens();
    StatusCode::NO_CONTENT
}

/// A run as a user pressing the action's button creates it; answers `{"id"}`.
async fn create_action_run(State(sim): Sim, Json(new): Json<NewActionRun>) -> Json<Value> {
    Json(json!({"id": sim.create_action_run(new)}))
}

/// Every run, oldest first, with its logs: `{"runs": [...]}`.
async fn action_runs(State(sim): Sim) -> Json<Value> {
    Json(json!({"runs": sim.action_runs()}))
}
