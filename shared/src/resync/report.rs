//! The run report: what a pass read, wrote, skipped and deleted, per kind.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::ado::AdoError;
use crate::catalog::CatalogError;

/// Messages kept per kind; the count goes on.
pub(crate) const MAX_MESSAGES: usize = 20;

/// One error of a pass, typed by where it happened; the causes (status, request, answer excerpt) stay
/// reachable. The JSON report renders each as its text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// The mapping names a kind this build does not know.
    #[error("kind {kind:?} is not supported by this version of ado-sync")]
    UnsupportedKind { kind: String },
    /// Listing the kind in Azure DevOps failed part way.
    #[error("listing failed: {0}")]
    Listing(#[source] AdoError),
    /// The selector's jq query failed on an item.
    #[error("selector: {message}")]
    Selector { message: String },
    /// The catalog refused one entity of a write.
    #[error("upsert of {blueprint}/{identifier} failed: {status} {error}: {message}")]
    EntityRejected {
        blueprint: String,
        identifier: String,
        status: u16,
        error: String,
        message: String,
    },
    /// The catalog failed a whole write (unreachable, refused credentials, failing past its retries).
    #[error("writing {count} {blueprint} entities failed: {source}")]
    WriteFailed {
        count: usize,
        blueprint: String,
        source: CatalogError,
    },
    /// This integration's entities could not be listed, so nothing could be reconciled.
    #[error("listing owned entities failed: {0}")]
    OwnedListing(#[source] CatalogError),
    /// Deleting stale entities failed.
    #[error("{0}")]
    Delete(#[source] CatalogError),
    /// The pass could not start (its mapping could not be read); the text says why.
    #[error("{message}")]
    NotStarted { message: String },
}

impl RunError {
    /// The Azure DevOps error underneath, if any.
    pub fn ado(&self) -> Option<&AdoError> {
        match self {
            RunError::Listing(e) => Some(e),
            _ => None,
        }
    }

    /// The catalog error underneath, if any.
    pub fn catalog(&self) -> Option<&CatalogError> {
        match self {
            RunError::WriteFailed { source, .. }
            | RunError::OwnedListing(source)
            | RunError::Delete(source) => Some(source),
            _ => None,
        }
    }
}

/// Typed errors go into the JSON report as their text, so the report's shape does not depend on them.
fn as_text<S: Serializer, E: std::fmt::Display>(e: &E, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

fn all_as_text<S: Serializer, E: std::fmt::Display>(es: &[E], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(es.iter().map(ToString::to_string))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    /// Position of the resource block in the mapping.
    pub index: usize,
    pub kind: String,
    pub items_read: u64,
    pub upserted: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub deleted: u64,
    /// Items the selector filtered out, or whose identifier or blueprint mapped to nothing.
    pub skipped: u64,
    /// Mapping fields that evaluated with an error or no output (set to null).
    pub field_warnings: u64,
    /// Items whose entity key an earlier item of the same block already produced in this pass (the
    /// peer's identifier patterns give, say, a board column once per work-item type). The first one is
    /// written; later ones are not, so an unchanged organisation costs no writes.
    pub duplicates: u64,
    /// Errors: listing failures, selector errors, failed writes. Any error keeps every entity of the
    /// blueprints this block may write.
    pub errors: u64,
    /// The first [`MAX_MESSAGES`] errors, typed; rendered as text in the JSON report.
    #[serde(serialize_with = "all_as_text")]
    pub messages: Vec<RunError>,
    /// The kind's service does not exist on this server (Azure DevOps Server has no Graph, entitlements
    /// or Advanced Security): not a failure, but nothing was listed, so its blueprints keep their entities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_available: Option<String>,
    /// The pass stopped (see [`RunReport::stopped`]) before this block finished, or before it started.
    pub stopped: bool,
    pub ado_requests: u64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
}

impl KindReport {
    pub(crate) fn error(&mut self, error: RunError) {
        self.errors += 1;
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(error);
        }
    }

    /// True when the block listed its kind to the end without an error: only then may reconciliation
    /// delete entities of the blueprints it writes.
    pub fn completed(&self) -> bool {
        self.errors == 0 && !self.stopped && self.not_available.is_none()
    }

    /// `kind[index]`, as reports and logs name a block.
    pub fn label(&self) -> String {
        format!("{}[{}]", self.kind, self.index)
    }
}

/// Why a pass stopped before every block finished. Nothing is deleted after a stop: the pass has not
/// seen the whole organisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The deadline (the Lambda's remaining time minus a margin, or `--max-seconds`) came first: the pass
    /// is incomplete, not failed.
    Deadline,
    /// Azure DevOps refused the credentials (401, or its sign-in page): no other request can succeed.
    AdoCredentials {
        #[serde(rename = "message", serialize_with = "as_text")]
        error: AdoError,
    },
    /// The catalog failed as a whole (unreachable, refused credentials, or failing past the retries):
    /// every other block would fail the same way.
    CatalogUnavailable {
        #[serde(rename = "message", serialize_with = "as_text")]
        error: RunError,
    },
}

impl StopReason {
    pub fn describe(&self) -> String {
        match self {
            StopReason::Deadline => {
                "incomplete: the deadline came before every kind was listed".to_owned()
            }
            StopReason::AdoCredentials { error } => {
                format!("stopped: Azure DevOps refused the credentials ({error})")
            }
            StopReason::CatalogUnavailable { error } => {
                format!("stopped: the catalog is unavailable ({error})")
            }
        }
    }
}

/// What reconciliation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeletionOutcome {
    /// Each blueprint this integration owns entities in was decided on its own.
    Reconciled { blueprints: Vec<BlueprintDeletion> },
    /// The pass stopped early (see [`RunReport::stopped`]): nothing was deleted.
    SkippedIncomplete,
    /// The owned entities could not be listed (or the pass never started): nothing was deleted.
    Failed {
        #[serde(rename = "message", serialize_with = "as_text")]
        error: RunError,
    },
}

/// The stale entities of one blueprint and what became of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlueprintDeletion {
    pub blueprint: String,
    /// Entities this integration owned in the blueprint before the pass (also those the pass rewrote).
    pub owned: usize,
    /// Owned entities the pass did not see.
    pub stale: usize,
    pub deleted: usize,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Every owned entity was seen.
    NothingStale,
    /// The stale entities were deleted.
    Deleted,
    /// A block that may write this blueprint did not complete (listed in `blocks`, as `kind[index]`), so
    /// the pass has not seen all of it: its entities are kept.
    KeptIncomplete { blocks: Vec<String> },
    /// More than `entityDeletionThreshold` of the blueprint's owned entities would have gone.
    KeptOverThreshold { rate: f64, threshold: f64 },
    /// Deleting failed part way.
    Failed {
        #[serde(rename = "message", serialize_with = "as_text")]
        error: RunError,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub resync_id: String,
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub kinds: Vec<KindReport>,
    /// Set when the pass stopped before every block finished.
    pub stopped: Option<StopReason>,
    pub deletion: DeletionOutcome,
    pub ado_requests: u64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl RunReport {
    /// A pass that failed before listing anything (its mapping could not be read): nothing was written
    /// or deleted.
    pub fn not_started(message: String) -> Self {
        Self {
            resync_id: uuid::Uuid::new_v4().to_string(),
            started_at: Utc::now(),
            duration: Duration::ZERO,
            kinds: Vec::new(),
            stopped: None,
            deletion: DeletionOutcome::Failed {
                error: RunError::NotStarted { message },
            },
            ado_requests: 0,
        }
    }

    /// True when every kind finished without an error (a kind not available on this server is no
    /// error), the pass was not stopped and reconciliation did not fail.
    pub fn succeeded(&self) -> bool {
        self.stopped.is_none()
            && self.kinds.iter().all(|k| k.errors == 0)
            && match &self.deletion {
                DeletionOutcome::Reconciled { blueprints } => blueprints
                    .iter()
                    .all(|b| !matches!(b.decision, Decision::Failed { .. })),
                DeletionOutcome::SkippedIncomplete => true,
                DeletionOutcome::Failed { .. } => false,
            }
    }

    /// True when the only thing wrong is that the deadline came first: nothing failed, the pass is just
    /// not finished (the CLI exits with 3 for this).
    pub fn incomplete(&self) -> bool {
        self.stopped == Some(StopReason::Deadline) && self.kinds.iter().all(|k| k.errors == 0)
    }

    pub fn totals(&self) -> KindReport {
        let mut t = KindReport {
            kind: "total".into(),
            duration: self.duration,
            ado_requests: self.ado_requests,
            ..Default::default()
        };
        for k in &self.kinds {
            t.items_read += k.items_read;
            t.upserted += k.upserted;
            t.unchanged += k.unchanged;
            t.failed += k.failed;
            t.deleted += k.deleted;
            t.skipped += k.skipped;
            t.field_warnings += k.field_warnings;
            t.duplicates += k.duplicates;
            t.errors += k.errors;
        }
        t
    }

    /// A plain-text table for terminals and logs.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // The first column is as wide as its longest name, so long kind names keep the columns aligned.
        let width = self
            .kinds
            .iter()
            .map(|k| k.label().chars().count())
            .chain(["total".len(), "kind".len()])
            .max()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>7} {:>9} {:>8}",
            "kind",
            "read",
            "upserted",
            "unchanged",
            "failed",
            "deleted",
            "skipped",
            "errors",
            "ado-reqs",
            "secs"
        );
        let row = |out: &mut String, name: &str, k: &KindReport| {
            let _ = writeln!(
                out,
                "{:<width$} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>7} {:>9} {:>8.2}",
                name,
                k.items_read,
                k.upserted,
                k.unchanged,
                k.failed,
                k.deleted,
                k.skipped,
                k.errors,
                k.ado_requests,
                k.duration.as_secs_f64()
            );
        };
        for k in &self.kinds {
            row(&mut out, &k.label(), k);
        }
        row(&mut out, "total", &self.totals());
        if let Some(stop) = &self.stopped {
            let _ = writeln!(out, "{}", stop.describe());
        }
        let _ = writeln!(out, "deletion: {}", self.deletion.describe());
        if let DeletionOutcome::Reconciled { blueprints } = &self.deletion {
            for b in blueprints.iter().filter(|b| b.stale > 0) {
                let _ = writeln!(out, "  {}", b.describe());
            }
        }
        for k in &self.kinds {
            if let Some(why) = &k.not_available {
                let _ = writeln!(out, "  {}: not available on this server: {why}", k.label());
            } else if k.stopped {
                let _ = writeln!(out, "  {}: not finished (the pass stopped)", k.label());
            }
        }
        for k in self.kinds.iter().filter(|k| k.field_warnings > 0) {
            let _ = writeln!(
                out,
                "  {}: {} mapped fields evaluated with an error or no output and were set to null (see `ado-sync map`)",
                k.label(),
                k.field_warnings
            );
        }
        for k in self.kinds.iter().filter(|k| k.duplicates > 0) {
            let _ = writeln!(
                out,
                "  {}: {} items repeated an entity identifier already written in this pass; the first was kept",
                k.label(),
                k.duplicates
            );
        }
        for k in &self.kinds {
            for m in &k.messages {
                let _ = writeln!(out, "  {}: {m}", k.label());
            }
            if k.errors as usize > k.messages.len() {
                let _ = writeln!(
                    out,
                    "  {}: … and {} more errors",
                    k.label(),
                    k.errors as usize - k.messages.len()
                );
            }
        }
        out
    }
}

impl DeletionOutcome {
    pub fn describe(&self) -> String {
        match self {
            DeletionOutcome::Reconciled { blueprints } => {
                let sum =
                    |f: fn(&BlueprintDeletion) -> usize| blueprints.iter().map(f).sum::<usize>();
                let kept = blueprints.iter().filter(|b| b.stale > b.deleted).count();
                match (sum(|b| b.stale), kept) {
                    (0, _) => format!(
                        "nothing stale ({} owned entities all seen)",
                        sum(|b| b.owned)
                    ),
                    (stale, 0) => format!(
                        "deleted {} of {stale} stale entities ({} owned before the pass)",
                        sum(|b| b.deleted),
                        sum(|b| b.owned)
                    ),
                    (stale, kept) => format!(
                        "deleted {} of {stale} stale entities; {kept} blueprints kept theirs (below)",
                        sum(|b| b.deleted)
                    ),
                }
            }
            DeletionOutcome::SkippedIncomplete => {
                "skipped: the pass stopped early, so nothing was deleted".into()
            }
            DeletionOutcome::Failed { error } => format!("failed, nothing deleted: {error}"),
        }
    }
}

impl BlueprintDeletion {
    pub fn describe(&self) -> String {
        let (bp, stale, owned) = (&self.blueprint, self.stale, self.owned);
        match &self.decision {
            Decision::NothingStale => format!("{bp}: nothing stale ({owned} owned)"),
            Decision::Deleted => {
                format!(
                    "{bp}: deleted {} of {stale} stale ({owned} owned)",
                    self.deleted
                )
            }
            Decision::KeptIncomplete { blocks } => format!(
                "{bp}: kept {stale} stale of {owned} owned: {} did not complete",
                blocks.join(", ")
            ),
            Decision::KeptOverThreshold { rate, threshold } => format!(
                "{bp}: kept {stale} stale of {owned} owned ({:.1}%), above entityDeletionThreshold {threshold}",
                rate * 100.0
            ),
            Decision::Failed { error } => format!(
                "{bp}: deleting failed after {} of {stale} stale: {error}",
                self.deleted
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Failure, Route};

    fn throttled() -> CatalogError {
        CatalogError::Transient(
            Failure::request(Route::new("POST", "/v1/blueprints/service/entities/bulk"))
                .with_context("bulk upsert")
                .with_status(503)
                .with_detail("after 6 attempt(s)"),
        )
    }

    fn report() -> RunReport {
        let mut kind = KindReport {
            kind: "repository".into(),
            ..Default::default()
        };
        let listing = AdoError::Transient(
            Failure::request(Route::new("GET", "/p/_apis/git/repositories"))
                .with_status(429)
                .with_retry_after(Some(Duration::from_secs(30))),
        );
        kind.error(RunError::Listing(listing));
        let write = RunError::WriteFailed {
            count: 3,
            blueprint: "service".into(),
            source: throttled(),
        };
        kind.error(write.clone());
        RunReport {
            resync_id: "r".into(),
            started_at: Utc::now(),
            duration: Duration::ZERO,
            kinds: vec![kind],
            stopped: Some(StopReason::CatalogUnavailable { error: write }),
            deletion: DeletionOutcome::SkippedIncomplete,
            ado_requests: 1,
        }
    }

    #[test]
    fn the_table_fits_its_longest_kind_and_says_which_fields_were_set_to_null() {
        let kind = |kind: &str, index, field_warnings| KindReport {
            kind: kind.into(),
            index,
            field_warnings,
            ..Default::default()
        };
        let report = RunReport {
            resync_id: "r".into(),
            started_at: Utc::now(),
            duration: Duration::ZERO,
            kinds: vec![
                kind("project", 0, 0),
                kind("advanced-security-alert", 12, 3),
            ],
            stopped: None,
            deletion: DeletionOutcome::Reconciled { blueprints: vec![] },
            ado_requests: 0,
        };
        let text = report.render();
        let table: Vec<&str> = text.lines().take(4).collect();
        // The first column is padded to its longest name and the others are fixed: rows of one length.
        let lengths: Vec<usize> = table.iter().map(|l| l.chars().count()).collect();
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert!(
            table[2].starts_with("advanced-security-alert[12] "),
            "{text}"
        );
        assert!(
            text.contains("advanced-security-alert[12]: 3 mapped fields evaluated with an error"),
            "{text}"
        );
    }

    #[test]
    fn the_report_keeps_typed_errors_and_their_causes() {
        let report = report();
        let errors = &report.kinds[0].messages;
        assert_eq!(errors[0].ado().and_then(AdoError::status), Some(429));
        assert_eq!(
            errors[0].ado().and_then(AdoError::retry_after),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            errors[1].catalog().and_then(CatalogError::status),
            Some(503)
        );
        assert!(errors[1].catalog().is_some_and(CatalogError::is_transient));
    }

    #[test]
    fn json_and_text_render_each_error_as_one_line_naming_its_request_once() {
        let report = report();
        let json = serde_json::to_value(&report).unwrap();
        let messages = json["kinds"][0]["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            "listing failed: Azure DevOps is unavailable: GET /p/_apis/git/repositories: HTTP 429"
        );
        assert_eq!(
            messages[1],
            "writing 3 service entities failed: catalog is unavailable: bulk upsert: \
             POST /v1/blueprints/service/entities/bulk: HTTP 503: after 6 attempt(s)"
        );
        assert_eq!(json["stopped"]["reason"], "catalog_unavailable");
        assert_eq!(json["stopped"]["message"], messages[1]);
        let text = report.render();
        assert_eq!(text.matches("POST /v1/blueprints").count(), 2, "{text}");
        assert!(text.contains("  repository[0]: listing failed: "), "{text}");
        assert!(
            text.contains("stopped: the catalog is unavailable (writing 3"),
            "{text}"
        );
    }
}
