//! ado-sync's domain library: everything real lives here; the functions and the CLI only wire it.
//!
//! - [`config`]: typed settings read once from the environment, secrets wrapped.
//! - [`ado`]: the Azure DevOps REST client (paging, rate limits, retries) and one module per kind.
//! - [`mapping`]: the `port-app-config` model and the jq mapping engine.
//! - [`catalog`]: the catalog port, the Port API client and the embedded catalog.
//! - [`resync`]: the full pass and the stale-entity plan.
//! - [`sync`]: applying one queued live change.
//! - [`tenants`]: the hosted service's tenant registry (DynamoDB, SQLite).
//! - [`actions`]: self-service actions: the queued job, its executor, completion reports, the claimer.
//! - [`failure`]: the typed detail of a failed remote call (route, status, retry-after, body, cause).
//! - [`retry`]: the backoff and the reading of server-requested waits both remote clients share.
//! - [`metrics`]: CloudWatch Embedded Metric Format lines, one per invocation.

pub mod actions;
pub mod ado;
pub mod aws;
pub mod catalog;
pub mod config;
pub mod failure;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod queue;
pub mod resync;
pub mod retry;
pub mod sync;
pub mod tenant;
pub mod tenants;
pub mod webhook;
