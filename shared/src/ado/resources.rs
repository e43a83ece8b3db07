//! Single-resource reads for live events: one GET per changed resource, returning `Ok(None)` when Azure
//! DevOps says it is gone (404), and the items enriched exactly as the listing kinds enrich them, so a
//! live write maps to the same entity as the resync.

use serde_json::Value;

use super::ids::{Guid, InvalidId, ProjectName, segment};
use super::kinds::{self, str_field};
use super::{AdoClient, AdoError, Request};

/// A 404 is an answer ("it is gone"), not a failure.
fn found(result: Result<super::Reply, AdoError>) -> Result<Option<Value>, AdoError> {
    match result {
        Ok(reply) => Ok(Some(reply.body)),
        Err(AdoError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `/{project}` when the project is known, else the organisation-level route (ADO serves both).
fn scoped(project: Option<&Guid>, rest: &str) -> String {
    match project {
        Some(p) => format!("/{p}{rest}"),
        None => rest.to_owned(),
    }
}

/// The id of a project as Azure DevOps answered it, checked before it goes into a path.
pub fn project_id_of(project: &Value) -> Result<Guid, AdoError> {
    Guid::parse(str_field(project, "id"))
        .map_err(|e| AdoError::permanent(format!("the project's id: {e}")))
}

/// The project as the list endpoint renders it (`TeamProjectReference`). The single GET adds `_links`,
/// `defaultTeam` and `capabilities`; the listing kinds put the list's shape into `__project`, and a live
/// write must produce the same entity or the next resync would rewrite it.
pub async fn project(client: &AdoClient, id: &Guid) -> Result<Option<Value>, AdoError> {
    project_at(client, &id.to_string()).await
}

/// The project of that name (the project GET takes a name as well as an id).
pub async fn project_named(
    client: &AdoClient,
    name: &ProjectName,
) -> Result<Option<Value>, AdoError> {
    project_at(client, &segment(name.as_str())).await
}

async fn project_at(client: &AdoClient, key: &str) -> Result<Option<Value>, AdoError> {
    let detail = found(
        client
            .send(&Request::get(format!("/_apis/projects/{key}")))
            .await,
    )?;
    Ok(detail.map(|mut p| {
        if let Value::Object(map) = &mut p {
            for key in ["_links", "defaultTeam", "capabilities"] {
                map.remove(key);
            }
        }
        p
    }))
}

/// A work item with `$expand`, enriched with `__projectId` and `__project` as the `work-item` kind does.
pub async fn work_item(
    client: &AdoClient,
    project: &Value,
    id: u64,
    expand: &str,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!(
        "/{}/_apis/wit/workitems/{id}",
        project_id_of(project)?
    ))
    .query("$expand", expand);
    let item = found(client.send(&req).await)?;
    Ok(item.map(|item| enriched_work_item(item, project)))
}

/// A work item of an unknown project (ADO serves work items organisation-wide), not enriched: its
/// project is found through [`work_item_project_name`].
pub async fn work_item_anywhere(
    client: &AdoClient,
    id: u64,
    expand: &str,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!("/_apis/wit/workitems/{id}")).query("$expand", expand);
    found(client.send(&req).await)
}

/// A work item read by [`work_item_anywhere`], enriched as the `work-item` kind does.
pub fn enriched_work_item(mut item: Value, project: &Value) -> Value {
    kinds::enrich_work_item(&mut item, project);
    item
}

/// The project a work item (or a deleted item's snapshot) names: `System.TeamProject`, else the root of
/// `System.AreaPath`. `None` when it names none.
pub fn work_item_project_name(item: &Value) -> Result<Option<ProjectName>, InvalidId> {
    let field = |name: &str| item.get("fields").and_then(|f| f.get(name));
    let text = |v: Option<&Value>| -> Result<Option<String>, InvalidId> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(InvalidId::NotAProjectName(other.to_string())),
        }
    };
    let name = match text(field("System.TeamProject"))? {
        Some(name) => Some(name),
        None => text(field("System.AreaPath"))?
            .and_then(|path| path.split('\\').next().map(str::to_owned)),
    };
    name.map(|n| ProjectName::parse(&n)).transpose()
}

/// What the listing would have produced for a work item that is gone: the event's snapshot (or just the
/// id) with the same enrichment, so a delete maps to the identifier the resync wrote.
pub fn deleted_work_item(snapshot: Option<&Value>, id: u64, project: &Value) -> Value {
    let mut item = match snapshot {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => Value::Object(Default::default()),
    };
    if item.get("id").and_then(Value::as_u64).is_none() {
        item["id"] = Value::from(id);
    }
    kinds::enrich_work_item(&mut item, project);
    item
}

/// A pull request, as the repository's pull-request list renders it.
pub async fn pull_request(
    client: &AdoClient,
    project: Option<&Guid>,
    id: u64,
) -> Result<Option<Value>, AdoError> {
    let path = scoped(project, &format!("/_apis/git/pullrequests/{id}"));
    found(client.send(&Request::get(path)).await)
}

/// A repository (removed ones are 404: ADO keeps them in a recycle bin the GET does not see).
pub async fn repository(
    client: &AdoClient,
    project: Option<&Guid>,
    id: &Guid,
) -> Result<Option<Value>, AdoError> {
    let path = scoped(project, &format!("/_apis/git/repositories/{id}"));
    found(client.send(&Request::get(path)).await)
}

/// A pipeline, enriched with `__projectId` and `__project` as the `pipeline` kind does.
pub async fn pipeline(
    client: &AdoClient,
    project: &Value,
    id: u64,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!("/{}/_apis/pipelines/{id}", project_id_of(project)?));
    let item = found(client.send(&req).await)?;
    Ok(item.map(|mut item| {
        kinds::enrich_pipeline(&mut item, project);
        item
    }))
}

/// What the listing would have produced for a pipeline that is gone.
pub fn deleted_pipeline(id: u64, project: &Value) -> Value {
    let mut item = serde_json::json!({ "id": id });
    kinds::enrich_pipeline(&mut item, project);
    item
}

/// Whether the project carries one of the excluded tags (the listing skips such projects everywhere).
pub async fn project_is_excluded(
    client: &AdoClient,
    project_id: &Guid,
    excluded_tags: &[String],
) -> Result<bool, AdoError> {
    if excluded_tags.is_empty() {
        return Ok(false);
    }
    kinds::carries_excluded_tag(client, &project_id.to_string(), excluded_tags).await
}

/// The `$expand` a `work-item` selector asks for (`All` unless set).
pub(crate) fn work_item_expand(
    selector: &crate::mapping::Selector,
) -> Result<&'static str, String> {
    kinds::work_item_expand(selector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deleted_work_item_is_enriched_like_a_listed_one() {
        let project = json!({"id": "p1", "name": "Alpha"});
        let item = deleted_work_item(
            Some(&json!({"id": 7, "rev": 3, "fields": {"System.Title": "t"}})),
            7,
            &project,
        );
        assert_eq!(item["__projectId"], "p1");
        assert_eq!(item["__project"], project);
        assert_eq!(item["fields"]["System.Title"], "t");
        assert_eq!(item["rev"], 3);
    }

    #[test]
    fn a_deleted_work_item_without_a_snapshot_still_has_its_id() {
        let project = json!({"id": "p1"});
        let item = deleted_work_item(None, 42, &project);
        assert_eq!(item["id"], 42);
        assert_eq!(item["__projectId"], "p1");
        let odd = deleted_work_item(Some(&json!("not an object")), 5, &project);
        assert_eq!(odd["id"], 5);
    }

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

    #[test]
    fn a_work_item_names_its_project_by_team_project_then_area_path() {
        let name = |fields: Value| {
            work_item_project_name(&json!({ "fields": fields }))
                .map(|n| n.map(|n| n.as_str().to_owned()))
        };
        assert_eq!(
            name(json!({"System.TeamProject": "Mobile App", "System.AreaPath": "Other\\Team"})),
            Ok(Some("Mobile App".into()))
        );
        assert_eq!(
            name(json!({"System.AreaPath": "Mobile App\\Frontend"})),
            Ok(Some("Mobile App".into()))
        );
        assert_eq!(name(json!({"System.Title": "t"})), Ok(None));
        assert_eq!(work_item_project_name(&json!("odd")), Ok(None));
        assert!(name(json!({"System.TeamProject": "../_apis"})).is_err());
        assert!(name(json!({"System.TeamProject": 5})).is_err());
    }
}
