//! The Port API client's side of self-service actions: the action-run routes under
//! `/v1/actions/runs` ([`ActionRuns`]). Reads are retried like every other read; the PATCHes and log
//! POSTs are retried too (a repeated status or link is the same state, a repeated log line is
//! harmless), and acknowledging a run is never repeated after an uncertain outcome's 409.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Agent, PortClient};
use crate::actions::{Acked, ActionRun, ActionRuns, RunId, RunPatch};
use crate::catalog::CatalogError;

/// Runs asked for at once by the timeout sweep.
const IN_PROGRESS_PAGE: usize = 100;

impl PortClient {
    async fn action_call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<super::Answer, CatalogError> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        self.call(method, url, Agent::Plain, body, true, what).await
    }

    fn runs_of(answer: &super::Answer, what: &str) -> Result<Vec<ActionRun>, CatalogError> {
        let body: Value = answer.json(what)?;
        Ok(body
            .get("runs")
            .and_then(Value::as_array)
            .map(|runs| runs.iter().filter_map(ActionRun::from_json).collect())
            .unwrap_or_default())
    }
}

#[async_trait]
impl ActionRuns for PortClient {
    async fn claim_pending(
        &self,
        installation_id: &str,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<Value>, CatalogError> {
        let what = "claiming pending action runs";
        let url = self.url(&["v1", "actions", "runs", "claim-pending"]);
        let body = json!({
            "installationId": installation_id,
            "limit": limit,
            "visibilityTimeoutMs": visibility.as_millis() as u64,
        });
        let answer = self
            .action_call(Method::POST, url, Some(body), what)
            .await?;
        if !answer.status.is_success() {
            return Err(answer.into_error(what));
        }
        let mut body: Value = answer.json(what)?;
        Ok(match body.get_mut("runs").map(Value::take) {
            Some(Value::Array(runs)) => runs,
            _ => Vec::new(),
        })
    }

    async fn ack(&self, run: &RunId) -> Result<Acked, CatalogError> {
        let what = "acknowledging an action run";
        let url = self.url(&["v1", "actions", "runs", "ack"]);
        let body = Bytes::from(json!({"runId": run}).to_string());
        // Sent once: a repeat after a lost answer would read our own ack's 409 as someone else's.
        let answer = self
            .call(Method::PATCH, url, Agent::Plain, Some(body), false, what)
            .await?;
        match answer.status.as_u16() {
            200..=299 => Ok(Acked::Taken),
            409 => Ok(Acked::AlreadyTaken),
            _ => Err(answer.into_error(what)),
        }
    }

    async fn run(&self, run: &RunId) -> Result<Option<ActionRun>, CatalogError> {
        let what = "reading an action run";
        let url = self.url(&["v1", "actions", "runs", run.as_str()]);
        let answer = self.action_call(Method::GET, url, None, what).await?;
        match answer.status.as_u16() {
            200..=299 => {
                let body: Value = answer.json(what)?;
                Ok(body.get("run").and_then(ActionRun::from_json))
            }
            404 => Ok(None),
            _ => Err(answer.into_error(what)),
        }
    }

    async fn find_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<ActionRun>, CatalogError> {
        let what = "finding an action run by external id";
        let mut url = self.url(&["v1", "actions", "runs"]);
        url.query_pairs_mut()
            .append_pair("version", "v2")
            .append_pair("external_run_id", external_id);
        let answer = self.action_call(Method::GET, url, None, what).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error(what));
        }
        Ok(Self::runs_of(&answer, what)?
            .into_iter()
            .find(|r| r.external_run_id.as_deref() == Some(external_id)))
    }

    async fn in_progress(&self) -> Result<Vec<ActionRun>, CatalogError> {
        let what = "listing action runs in progress";
        let mut url = self.url(&["v1", "actions", "runs"]);
        url.query_pairs_mut()
            .append_pair("version", "v2")
            .append_pair("active", "true")
            .append_pair("limit", &IN_PROGRESS_PAGE.to_string());
        let answer = self.action_call(Method::GET, url, None, what).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error(what));
        }
        Self::runs_of(&answer, what)
    }

    async fn log(&self, run: &RunId, message: &str) -> Result<(), CatalogError> {
        let what = "writing an action run log";
        let url = self.url(&["v1", "actions", "runs", run.as_str(), "logs"]);
        let answer = self
            .action_call(Method::POST, url, Some(json!({"message": message})), what)
            .await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.into_error(what))
        }
    }

    async fn patch(&self, run: &RunId, patch: &RunPatch) -> Result<(), CatalogError> {
        let what = "updating an action run";
        let url = self.url(&["v1", "actions", "runs", run.as_str()]);
        let body = serde_json::to_value(patch).map_err(|e| CatalogError::invalid(e.to_string()))?;
        let answer = self
            .action_call(Method::PATCH, url, Some(body), what)
            .await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.into_error(what))
        }
    }
}
