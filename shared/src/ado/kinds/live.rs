//! The live side of a kind: the service-hook events that refresh it, how such an event names the changed
//! item (the queued [`Change`]), and what a kind needs to read that one item back ([`LiveContext`]). The
//! webhook's event list, the subscription catalogue and the processor's dispatch are all derived from
//! what the kinds of [`super::ALL`] declare here.

use std::collections::HashMap;

use serde_json::Value;
use tokio::sync::Mutex;

use super::{Block, OptionError, str_field};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoClient, AdoError, ApiVersion, Guid, InvalidId, ProjectName, Request};
use crate::mapping::CompiledResource;
use crate::queue::message::{Change, ChangeMessage};

/// One service-hook event and how its payload names the changed item. Declared once, as a `static`, by
/// the kind whose item the event names; every kind the event also refreshes lists the same static.
#[derive(Debug)]
pub struct LiveEvent {
    pub spec: EventSpec,
    /// Reads the ids out of the delivery's `resource`. Pure.
    pub name: fn(&Value) -> Result<Change, Unnamed>,
}

/// Why an event's resource does not name an item the processor could read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unnamed {
    /// The event lacks an id; usually a subscription created with `resourceDetailsToSend` other than
    /// `all`.
    #[error("the resource has no usable {0}")]
    Missing(&'static str),
    /// An id is there but is not one Azure DevOps issues (a GUID or a positive integer): its value must
    /// not reach a request path.
    #[error("the {0} is not an id Azure DevOps issues")]
    Invalid(&'static str),
}

pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// An integer id: `None` when it is not there (missing, null, empty, or 0, which Microsoft's samples
/// use for "not set"), an error when it is there but not a positive integer (a number or a numeric
/// string).
fn number(v: Option<&Value>, what: &'static str) -> Result<Option<u64>, Unnamed> {
    let invalid = Unnamed::Invalid(what);
    let n = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().ok_or(invalid)?,
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.trim().parse::<u64>().ok())
            .flatten()
            .ok_or(invalid)?,
        Some(_) => return Err(invalid),
    };
    Ok((n > 0).then_some(n))
}

/// The first of `paths` that is there; a malformed one is an error, not a reason to look further.
pub(crate) fn first_number(
    r: &Value,
    paths: &[&[&str]],
    what: &'static str,
) -> Result<Option<u64>, Unnamed> {
    for path in paths {
        if let Some(n) = number(at(r, path), what)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// [`first_number`], required.
pub(crate) fn required_number(
    r: &Value,
    paths: &[&[&str]],
    what: &'static str,
) -> Result<u64, Unnamed> {
    first_number(r, paths, what)?.ok_or(Unnamed::Missing(what))
}

/// A GUID id: `None` when it is not there (missing, null, empty, or the all-zero placeholder), an
/// error when it is there but not a GUID.
fn guid(v: Option<&Value>, what: &'static str) -> Result<Option<Guid>, Unnamed> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            let g = Guid::parse(s.trim()).map_err(|_| Unnamed::Invalid(what))?;
            Ok((!g.is_nil()).then_some(g))
        }
        Some(_) => Err(Unnamed::Invalid(what)),
    }
}

pub(crate) fn first_guid<'a>(
    candidates: impl IntoIterator<Item = Option<&'a Value>>,
    what: &'static str,
) -> Result<Option<Guid>, Unnamed> {
    for v in candidates {
        if let Some(g) = guid(v, what)? {
            return Ok(Some(g));
        }
    }
    Ok(None)
}

/// The repository an event names, required.
pub(crate) fn repository_id(r: &Value, paths: &[&[&str]]) -> Result<Guid, Unnamed> {
    first_guid(paths.iter().map(|p| at(r, p)), "repository id")?
        .ok_or(Unnamed::Missing("repository id"))
}

/// What one resource block's read produced: the current state of the resource (it exists), or what is
/// left of it (it is gone), shaped as the listing would have produced it so it maps to the same entity.
#[derive(Debug, Clone, PartialEq)]
pub enum RawItem {
    Current(Value),
    Gone(Value),
}

/// The raw items a kind read for one change, each with the resource block that maps it (a block may need
/// its own read, e.g. its own `$expand`).
pub type Changed<'b> = Vec<(&'b CompiledResource, RawItem)>;

/// The same raw item for every block.
pub(crate) fn each<'b, O>(blocks: &[Block<'b, O>], raw: RawItem) -> Changed<'b> {
    blocks.iter().map(|b| (b.resource, raw.clone())).collect()
}

/// Why a kind could not read what a change names.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Azure DevOps answered with an error (what the queue does depends on the [`AdoError`]).
    #[error("{context}: {source}")]
    Ado {
        context: String,
        #[source]
        source: AdoError,
    },
    /// A block was compiled without its kind's options (see [`super::parse_options`]): the same
    /// message fails again.
    #[error("{kind} resource {index}: {source}")]
    Option {
        kind: String,
        index: usize,
        #[source]
        source: OptionError,
    },
    /// An id Azure DevOps answered is not one it issues: it never goes into a path.
    #[error("{context}: {source}")]
    Id {
        context: String,
        #[source]
        source: InvalidId,
    },
}

impl LiveError {
    /// For `map_err`: an Azure DevOps error while reading `context`.
    pub(crate) fn ado(context: impl std::fmt::Display) -> impl FnOnce(AdoError) -> Self {
        let context = context.to_string();
        move |source| Self::Ado { context, source }
    }

    /// For `map_err`: `block`'s options cannot be had.
    pub(crate) fn block_option(block: &CompiledResource) -> impl FnOnce(OptionError) -> Self + '_ {
        move |source| Self::Option {
            kind: block.kind().to_owned(),
            index: block.index(),
            source,
        }
    }
}

/// What a kind reads through while applying one change. Single GETs go through [`Self::get`], which asks
/// once per message: the kinds one change refreshes share what they read (a build, its project).
pub struct LiveContext<'a> {
    pub ado: &'a AdoClient,
    excluded_tags: &'a [String],
    reads: Mutex<HashMap<String, Option<Value>>>,
}

const TAG_PREFIX: &str = super::TAG_PREFIX;

impl<'a> LiveContext<'a> {
    pub fn new(ado: &'a AdoClient, excluded_tags: &'a [String]) -> Self {
        Self {
            ado,
            excluded_tags,
            reads: Mutex::default(),
        }
    }

    /// One GET, once per message; `None` when Azure DevOps says it is gone (a 404 is an answer, not a
    /// failure).
    pub async fn get(&self, req: Request) -> Result<Option<Value>, AdoError> {
        let key = format!(
            "{:?} {} {:?} {:?}",
            req.service, req.path, req.query, req.api_version
        );
        if let Some(done) = self.reads.lock().await.get(&key) {
            return Ok(done.clone());
        }
        let read = match self.ado.send(&req).await {
            Ok(reply) => Some(reply.body),
            Err(AdoError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.reads.lock().await.insert(key, read.clone());
        Ok(read)
    }

    /// The project as the list endpoint renders it (`TeamProjectReference`). The single GET adds
    /// `_links`, `defaultTeam` and `capabilities`; the listing kinds put the list's shape into
    /// `__project`, and a live write must produce the same entity or the next resync would rewrite it.
    pub async fn project(&self, id: &Guid) -> Result<Option<Value>, AdoError> {
        self.project_at(&id.to_string()).await
    }

    /// The project of that name (the project GET takes a name as well as an id).
    pub async fn project_named(&self, name: &ProjectName) -> Result<Option<Value>, AdoError> {
        self.project_at(&crate::ado::ids::segment(name.as_str()))
            .await
    }

    async fn project_at(&self, key: &str) -> Result<Option<Value>, AdoError> {
        let detail = self
            .get(Request::get(format!("/_apis/projects/{key}")))
            .await?;
        Ok(detail.map(|mut p| {
            if let Value::Object(map) = &mut p {
                for key in ["_links", "defaultTeam", "capabilities"] {
                    map.remove(key);
                }
            }
            p
        }))
    }

    /// The project reference, or just its id when the project is gone.
    pub async fn project_or_id(&self, project_id: &Guid) -> Result<Value, LiveError> {
        Ok(self
            .project(project_id)
            .await
            .map_err(LiveError::ado(format_args!("project {project_id}")))?
            .unwrap_or_else(|| serde_json::json!({ "id": project_id })))
    }

    /// Whether the project carries an excluded tag (the listing skips such projects everywhere). Tags
    /// that cannot be read keep the project, as the listing does; only a transient failure is an error.
    pub async fn excluded(&self, project_id: Option<&Guid>) -> Result<bool, LiveError> {
        let Some(project_id) = project_id else {
            return Ok(false);
        };
        if self.excluded_tags.is_empty() {
            return Ok(false);
        }
        let req = Request::get(format!("/_apis/projects/{project_id}/properties"))
            .query("keys", format!("{TAG_PREFIX}*"))
            .version(ApiVersion::Preview(1));
        let tagged = self.get(req).await.map(|reply| {
            reply
                .map(|body| crate::ado::paging::take_items(body, "value"))
                .unwrap_or_default()
                .iter()
                .any(|prop| {
                    prop.get("name")
                        .and_then(Value::as_str)
                        .and_then(|n| n.strip_prefix(TAG_PREFIX))
                        .is_some_and(|tag| self.excluded_tags.iter().any(|t| t == tag))
                })
        });
        match tagged {
            Ok(true) => {
                tracing::info!(
                    project = %project_id,
                    "the project carries an excluded tag; nothing to do"
                );
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) if e.is_transient() => Err(LiveError::Ado {
                context: format!("reading the tags of project {project_id}"),
                source: e,
            }),
            Err(e) => {
                tracing::warn!(project = %project_id, error = %e, "could not read project tags; keeping the project");
                Ok(false)
            }
        }
    }

    /// The project of a change that exists only under a project (CI/CD, releases, alerts, branches), as
    /// Azure DevOps renders it. `None`, logged: the change names no project, it is excluded, or gone.
    pub async fn project_of(&self, message: &ChangeMessage) -> Result<Option<Value>, LiveError> {
        let Some(project_id) = message.project_id.as_ref() else {
            tracing::info!(event_type = %message.event_type, "the change names no project; its kinds cannot be read");
            return Ok(None);
        };
        if self.excluded(Some(project_id)).await? {
            return Ok(None);
        }
        let context = format!("{} in project {project_id}", message.event_type);
        let project = self
            .project(project_id)
            .await
            .map_err(LiveError::ado(context))?;
        if project.is_none() {
            tracing::info!(project = %project_id, "project not found; nothing to do");
        }
        Ok(project)
    }
}

/// The id of a project as Azure DevOps answered it, checked before it goes into a path.
pub(crate) fn project_id_of(project: &Value) -> Result<Guid, AdoError> {
    Guid::parse(str_field(project, "id"))
        .map_err(|e| AdoError::permanent(format!("the project's id: {e}")))
}

/// A GUID from an Azure DevOps answer; one that is not a GUID counts as absent.
pub(crate) fn answered_guid(v: &Value, pointer: &str) -> Option<Guid> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| Guid::parse(s).ok())
}

/// `/{project}` when the project is known, else the organisation-level route (ADO serves both).
pub(crate) fn scoped(project: Option<&Guid>, rest: &str) -> String {
    match project {
        Some(p) => format!("/{p}{rest}"),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn organisation_level_routes_are_used_when_the_project_is_unknown() {
        let p = Guid::parse("be9b3917-87e6-42a4-a549-2bc06a7a878f").unwrap();
        assert_eq!(
            scoped(Some(&p), "/_apis/git/repositories/r"),
            "/be9b3917-87e6-42a4-a549-2bc06a7a878f/_apis/git/repositories/r"
        );
        assert_eq!(
            scoped(None, "/_apis/git/repositories/r"),
            "/_apis/git/repositories/r"
        );
    }

    #[test]
    fn a_project_answer_without_a_guid_id_never_reaches_a_path() {
        assert!(project_id_of(&json!({"id": "be9b3917-87e6-42a4-a549-2bc06a7a878f"})).is_ok());
        for bad in [json!({"id": "../x"}), json!({"id": 5}), json!({})] {
            assert!(
                matches!(project_id_of(&bad), Err(AdoError::Permanent(_))),
                "{bad}"
            );
        }
    }
}
