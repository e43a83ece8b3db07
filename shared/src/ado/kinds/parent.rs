//! Re-reading a parent to prove a 404 means gone: a listing under a parent (a repository's refs, a
//! team's boards, a build's timeline) that answers 404 lists nothing only once the parent's own GET
//! answers 404 too. Holds the rule ([`recheck_parent`], [`unless_parent_gone`]) and the parents' GETs.

use serde_json::Value;

use super::listing::repo_project;
use super::str_field;
use crate::ado::{AdoClient, AdoError, ApiVersion, Request};

/// What a second look at the parent of a missing listing found.
pub(crate) enum Recheck {
    /// The parent's own GET answers 404: its children are gone with it.
    ParentGone,
    /// The parent is still there, so the 404 proves nothing about its children. `error` says so, for
    /// the kind to fail with; `parent` is the parent as read now, for the few callers that know a
    /// state in which a parent legitimately has nothing to list.
    ParentPresent { parent: Value, error: AdoError },
}

/// The one rule for a listing under a parent the pass has just listed (a repository's refs, a team's
/// iterations, a build's timeline): a 404 there is not "no items". An unknown route, a proxy or a
/// half-deployed service answer 404 too, and taking that as an empty listing deletes every entity of
/// the kind. Only the parent's own GET answering 404 proves its children are gone. Any other error, on
/// the listing or on the second look, is returned as it is (with what was being checked).
pub(crate) async fn recheck_parent(
    client: &AdoClient,
    error: AdoError,
    parent: &Request,
) -> Result<Recheck, AdoError> {
    if !matches!(error, AdoError::NotFound(_)) {
        return Err(error);
    }
    match client.send(parent).await {
        Ok(reply) => Ok(Recheck::ParentPresent {
            parent: reply.body,
            error: AdoError::permanent(format!(
                "{error}; yet {} still exists, so the listing's 404 does not prove its items are \
                 gone, and none are deleted",
                parent.path
            )),
        }),
        Err(AdoError::NotFound(_)) => {
            tracing::info!(parent = %parent.path, "gone since it was listed: it has nothing left to list");
            Ok(Recheck::ParentGone)
        }
        Err(other) => Err(with_context(
            other,
            &format!("after {error}, reading {} again failed", parent.path),
        )),
    }
}

/// [`recheck_parent`] for the usual case: `Ok` (nothing to list) only when the parent is gone.
pub(crate) async fn unless_parent_gone(
    client: &AdoClient,
    error: AdoError,
    parent: &Request,
) -> Result<(), AdoError> {
    match recheck_parent(client, error, parent).await? {
        Recheck::ParentGone => Ok(()),
        Recheck::ParentPresent { error, .. } => Err(error),
    }
}

/// The same kind of error, with what was being done in front: callers act on the kind (a refused
/// credential stops the pass), people on the text.
fn with_context(e: AdoError, context: &str) -> AdoError {
    e.context(context)
}

/// A repository as its own GET reads it: the parent of every per-repository listing.
pub(crate) fn repository_request(repo: &Value) -> Request {
    Request::get(format!(
        "/{}/_apis/git/repositories/{}",
        repo_project(repo),
        str_field(repo, "id")
    ))
}

/// A team as its own GET reads it: the parent of its boards, iterations and settings.
pub(crate) fn team_request(project_id: &str, team_id: &str) -> Request {
    Request::get(format!("/_apis/projects/{project_id}/teams/{team_id}"))
}

/// A project as its own GET reads it.
pub(crate) fn project_request(project_id: &str) -> Request {
    Request::get(format!("/_apis/projects/{project_id}"))
}

/// A build as its own GET reads it: the parent of its timeline and changes.
pub(crate) fn build_request(project_id: &str, build_id: &Value) -> Request {
    Request::get(format!("/{project_id}/_apis/build/builds/{build_id}"))
}

/// A pipeline as its own GET reads it: the parent of its runs and its build definition.
pub(crate) fn pipeline_request(project_id: &str, pipeline_id: &Value) -> Request {
    Request::get(format!("/{project_id}/_apis/pipelines/{pipeline_id}"))
}

/// An environment as its own GET reads it (a preview API, like the list).
pub(crate) fn environment_request(project_id: &str, environment_id: &Value) -> Request {
    Request::get(format!(
        "/{project_id}/_apis/distributedtask/environments/{environment_id}"
    ))
    .version(ApiVersion::Preview(1))
}
