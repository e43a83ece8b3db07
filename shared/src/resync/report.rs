//! The run report: what a pass read, wrote, skipped and deleted, per kind.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Messages kept per kind; the count goes on.
pub(crate) const MAX_MESSAGES: usize = 20;

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
    /// Errors that block deletion: listing failures, selector errors, failed writes.
    pub errors: u64,
    pub messages: Vec<String>,
    pub ado_requests: u64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
}

impl KindReport {
    pub(crate) fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message.into());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeletionOutcome {
    /// Owned entities not seen in the pass were deleted.
    Deleted {
        candidates: usize,
        deleted: usize,
        owned: usize,
    },
    /// Every owned entity was seen.
    NothingStale { owned: usize },
    /// The pass had errors, so its view of the organisation is incomplete: nothing was deleted.
    SkippedAfterErrors,
    /// More than `entityDeletionThreshold` of the owned entities would have gone.
    SkippedOverThreshold {
        candidates: usize,
        owned: usize,
        rate: f64,
        threshold: f64,
    },
    /// Listing or deleting failed part way.
    Failed { message: String, deleted: usize },
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub resync_id: String,
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub kinds: Vec<KindReport>,
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
            deletion: DeletionOutcome::Failed {
                message,
                deleted: 0,
            },
            ado_requests: 0,
        }
    }

    /// True when every kind finished without an error and reconciliation did not fail.
    pub fn succeeded(&self) -> bool {
        self.kinds.iter().all(|k| k.errors == 0)
            && !matches!(self.deletion, DeletionOutcome::Failed { .. })
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
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>7} {:>9} {:>8}",
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
                "{:<22} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>7} {:>9} {:>8.2}",
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
            row(&mut out, &format!("{}[{}]", k.kind, k.index), k);
        }
        row(&mut out, "total", &self.totals());
        let _ = writeln!(out, "deletion: {}", self.deletion.describe());
        for k in self.kinds.iter().filter(|k| k.duplicates > 0) {
            let _ = writeln!(
                out,
                "  {}[{}]: {} items repeated an entity identifier already written in this pass; the first was kept",
                k.kind, k.index, k.duplicates
            );
        }
        for k in &self.kinds {
            for m in &k.messages {
                let _ = writeln!(out, "  {}[{}]: {m}", k.kind, k.index);
            }
            if k.errors as usize > k.messages.len() {
                let _ = writeln!(
                    out,
                    "  {}[{}]: … and {} more errors",
                    k.kind,
                    k.index,
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
            DeletionOutcome::Deleted {
                candidates,
                deleted,
                owned,
            } => {
                format!(
                    "deleted {deleted} of {candidates} stale entities ({owned} owned before the pass)"
                )
            }
            DeletionOutcome::NothingStale { owned } => {
                format!("nothing stale ({owned} owned entities all seen)")
            }
            DeletionOutcome::SkippedAfterErrors => {
                "skipped: the pass had errors, so nothing was deleted".into()
            }
            DeletionOutcome::SkippedOverThreshold {
                candidates,
                owned,
                rate,
                threshold,
            } => format!(
                "skipped: {candidates} of {owned} owned entities ({:.1}%) would go, above entityDeletionThreshold {threshold}",
                rate * 100.0
            ),
            DeletionOutcome::Failed { message, deleted } => {
                format!("failed after {deleted} deletions: {message}")
            }
        }
    }
}
