//! `/_sim/catalog/…`: the catalog simulator's controls for out-of-process tests (request counts,
//! faults, token expiry), beside the Azure DevOps side's `/_sim/…`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{CatalogSim, CatalogStats, Fault, FaultAction};

type Sim = State<Arc<CatalogSim>>;

pub(super) fn routes(sim: &Arc<CatalogSim>) -> Router {
    Router::new()
        .route("/_sim/catalog/stats", get(stats))
        .route("/_sim/catalog/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/catalog/tokens/expire", post(expire_tokens))
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
