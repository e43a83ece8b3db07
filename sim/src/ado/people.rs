//! Teams, team members and team settings (core host), Graph users, groups, memberships and subject
//! lookup (vssps), and user entitlements (vsaex). On the simulator every host is the collection URL,
//! as on Azure DevOps Server. People are derived from (seed, index); the first eight are the people
//! work items and pull requests already reference.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::Duration;
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::AdoError;
use super::org::{Org, Project, fmt_time, guid, h};
use super::routes::{base, int_param, list_body, param, project, with_continuation};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

/// org.rs's user tag: the first eight people keep the ids work items reference.
const TAG_USER: u64 = 7;
const TAG_TEAM: u64 = 2;
const TAG_GROUP: u64 = 0x51;
/// ADO's default (and largest) team and member page.
const TEAM_PAGE: usize = 100;
/// Graph lists and the entitlement search page by server-chosen pages; 100 here.
const GRAPH_PAGE: usize = 100;

const FIRST_PEOPLE: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@simorg.example"),
    ("Grace Hopper", "grace@simorg.example"),
    ("Alan Turing", "alan@simorg.example"),
    ("Barbara Liskov", "barbara@simorg.example"),
    ("Edsger Dijkstra", "edsger@simorg.example"),
    ("Margaret Hamilton", "margaret@simorg.example"),
    ("Ken Thompson", "ken@simorg.example"),
    ("Frances Allen", "frances@simorg.example"),
];
const TEAM_NAMES: &[&str] = &["Frontend", "Backend", "Operations", "Quality"];
const GROUPS: &[&str] = &["Project Administrators", "Contributors", "Readers"];
const AREA_OF_TEAM: &[&str] = &["", "Frontend", "Backend", "Operations"];

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/_apis/projects/{{projectId}}/teams"),
            get(list_teams),
        )
        .route(
            &format!("{o}/_apis/projects/{{projectId}}/teams/{{teamId}}"),
            get(get_team),
        )
        .route(
            &format!("{o}/_apis/projects/{{projectId}}/teams/{{teamId}}/members"),
            get(team_members),
        )
        .route(
            &format!("{o}/{{project}}/{{team}}/_apis/work/teamsettings/teamfieldvalues"),
            get(team_field_values),
        )
        .route(&format!("{o}/_apis/graph/users"), get(graph_users))
        .route(&format!("{o}/_apis/graph/groups"), get(graph_groups))
        .route(
            &format!("{o}/_apis/graph/users/{{descriptor}}"),
            get(graph_user),
        )
        .route(
            &format!("{o}/_apis/graph/groups/{{descriptor}}"),
            get(graph_group),
        )
        .route(
            &format!("{o}/_apis/graph/memberships/{{descriptor}}"),
            get(memberships),
        )
        .route(
            &format!("{o}/_apis/graph/subjectlookup"),
            post(subject_lookup),
        )
        .route(&format!("{o}/_apis/userentitlements"), get(entitlements))
}

// ---------------------------------------------------------------- people

pub(crate) struct Person {
    pub i: usize,
    pub display_name: String,
    pub unique_name: String,
    pub id: String,
    pub descriptor: String,
    /// `aad` for organisation accounts, `msa` for personal Microsoft accounts.
    pub origin: &'static str,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

pub(crate) fn person(org: &Org, i: usize) -> Person {
    let (display_name, unique_name) = match FIRST_PEOPLE.get(i) {
        Some((d, u)) => ((*d).to_owned(), (*u).to_owned()),
        None => (format!("Sim User {i}"), format!("user{i}@simorg.example")),
    };
    let id = guid(org.seed, TAG_USER, i as u64, 0);
    let origin = if i % 10 == 9 { "msa" } else { "aad" };
    Person {
        i,
        descriptor: format!("{origin}.{}", b64(&id)),
        display_name,
        unique_name,
        id,
        origin,
    }
}

fn identity_json(base: &str, p: &Person) -> Value {
    let avatar = format!("{base}/_apis/GraphProfile/MemberAvatars/{}", p.descriptor);
    json!({
        "displayName": p.display_name,
        "url": format!("{base}/_apis/Identities/{}", p.id),
        "_links": {"avatar": {"href": avatar}},
        "id": p.id,
        "uniqueName": p.unique_name,
        "imageUrl": format!("{base}/_api/_common/identityImage?id={}", p.id),
        "descriptor": p.descriptor,
    })
}

fn graph_user_json(base: &str, p: &Person) -> Value {
    let g = |kind: &str| json!({"href": format!("{base}/_apis/Graph/{kind}/{}", p.descriptor)});
    json!({
        "subjectKind": "user",
        "metaType": "member",
        "directoryAlias": p.unique_name.split('@').next().unwrap_or_default(),
        "domain": if p.origin == "aad" { "8b2a3c91-11d2-4e89-a2c3-99b8d7621a55" } else { "Windows Live ID" },
        "principalName": p.unique_name,
        "mailAddress": p.unique_name,
        "origin": p.origin,
        "originId": p.id,
        "displayName": p.display_name,
        "_links": {
            "self": g("Users"),
            "memberships": g("Memberships"),
            "membershipState": g("MembershipStates"),
            "storageKey": g("StorageKeys"),
            "avatar": {"href": format!("{base}/_apis/GraphProfile/MemberAvatars/{}", p.descriptor)},
        },
        "url": format!("{base}/_apis/Graph/Users/{}", p.descriptor),
        "descriptor": p.descriptor,
    })
}

// ---------------------------------------------------------------- teams

pub(crate) struct Team {
    pub k: usize,
    pub id: String,
    pub name: String,
}

pub(crate) fn teams(org: &Org, pi: usize) -> Vec<Team> {
    let p = &org.projects[pi];
    (0..org.teams_per_project)
        .map(|k| Team {
            k,
            id: if k == 0 {
                p.team_id.clone()
            } else {
                guid(org.seed, TAG_TEAM, pi as u64, k as u64)
            },
            name: if k == 0 {
                format!("{} Team", p.name)
            } else {
                match TEAM_NAMES.get(k - 1) {
                    Some(n) => (*n).to_owned(),
                    None => format!("Team {k:03}"),
                }
            },
        })
        .collect()
}

/// The team of a project by id or name.
pub(crate) fn find_team(sim: &AdoSim, p: &Project, key: &str) -> Result<Team> {
    let pi = project_index(sim, p);
    teams(&sim.org, pi)
        .into_iter()
        .find(|t| t.id.eq_ignore_ascii_case(key) || t.name.eq_ignore_ascii_case(key))
        .ok_or_else(|| {
            AdoError::not_found(
                "TeamNotFoundException",
                format!("VS800079: The team with id or name '{key}' does not exist."),
            )
        })
}

pub(crate) fn project_index(sim: &AdoSim, p: &Project) -> usize {
    sim.org
        .projects
        .iter()
        .position(|q| q.id == p.id)
        .unwrap_or_default()
}

fn team_json(base: &str, p: &Project, t: &Team) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "url": format!("{base}/_apis/projects/{}/teams/{}", p.id, t.id),
        "description": if t.k == 0 { "The default project team.".to_owned() } else { format!("The {} team.", t.name) },
        "identityUrl": format!("{base}/_apis/Identities/{}", t.id),
        "projectName": p.name,
        "projectId": p.id,
    })
}

/// Whether person `i` is in team `k`: people are spread over the teams, and the default team also
/// holds the first eight.
pub(crate) fn in_team(org: &Org, k: usize, i: usize) -> bool {
    i % org.teams_per_project == k || (k == 0 && i < FIRST_PEOPLE.len())
}

fn page_of<T>(all: Vec<T>, q: &[(String, String)], default: usize) -> Result<Vec<T>> {
    let top = int_param(q, "$top")?.unwrap_or(default);
    let skip = int_param(q, "$skip")?.unwrap_or(0);
    Ok(all.into_iter().skip(skip).take(top).collect())
}

async fn list_teams(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let all = teams(&sim.org, project_index(&sim, p));
    let value = page_of(all, &q, TEAM_PAGE)?
        .iter()
        .map(|t| team_json(&base, p, t))
        .collect();
    Ok(Json(list_body(value)))
}

async fn get_team(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, tkey)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let t = find_team(&sim, p, &tkey)?;
    Ok(Json(team_json(&base(&sim, &headers), p, &t)))
}

async fn team_members(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, tkey)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let t = find_team(&sim, p, &tkey)?;
    let base = base(&sim, &headers);
    let members: Vec<usize> = (0..sim.org.users)
        .filter(|&i| in_team(&sim.org, t.k, i))
        .collect();
    let value = page_of(members, &q, TEAM_PAGE)?
        .into_iter()
        .map(|i| {
            let mut m = json!({"identity": identity_json(&base, &person(&sim.org, i))});
            if i == t.k {
                m["isTeamAdmin"] = json!(true);
            }
            m
        })
        .collect();
    Ok(Json(list_body(value)))
}

async fn team_field_values(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, tkey)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let t = find_team(&sim, p, &tkey)?;
    let base = base(&sim, &headers);
    let area = match AREA_OF_TEAM[t.k % AREA_OF_TEAM.len()] {
        "" => p.name.clone(),
        a => format!("{}\\{a}", p.name),
    };
    let url = format!(
        "{base}/{}/{}/_apis/work/teamsettings/teamfieldvalues",
        p.id, t.id
    );
    Ok(Json(json!({
        "field": {"referenceName": "System.AreaPath", "url": format!("{base}/_apis/wit/fields/System.AreaPath")},
        "defaultValue": area,
        "values": [{"value": area, "includeChildren": t.k == 0}],
        "url": url,
        "_links": {"self": {"href": url}},
    })))
}

// ---------------------------------------------------------------- graph

/// Groups: three per project, the default team's group, and the collection administrators.
pub(crate) struct GroupRef {
    /// `None`: collection-level.
    pub project: Option<usize>,
    pub g: usize,
}

fn all_groups(org: &Org) -> Vec<GroupRef> {
    let mut out: Vec<GroupRef> = (0..org.projects.len())
        .flat_map(|pi| {
            (0..=GROUPS.len()).map(move |g| GroupRef {
                project: Some(pi),
                g,
            })
        })
        .collect();
    out.push(GroupRef {
        project: None,
        g: 0,
    });
    out
}

fn group_id(org: &Org, r: &GroupRef) -> String {
    guid(
        org.seed,
        TAG_GROUP,
        r.project.map_or(u64::MAX, |p| p as u64),
        r.g as u64,
    )
}

fn group_descriptor(org: &Org, r: &GroupRef) -> String {
    format!("vssgp.{}", b64(&group_id(org, r)))
}

fn group_json(org: &Org, base: &str, r: &GroupRef) -> Value {
    let descriptor = group_descriptor(org, r);
    let (name, principal, domain, description) = match r.project {
        Some(pi) => {
            let p = &org.projects[pi];
            let name = match GROUPS.get(r.g) {
                Some(g) => (*g).to_owned(),
                None => format!("{} Team", p.name),
            };
            (
                name.clone(),
                format!("[{}]\\{name}", p.name),
                format!("vstfs:///Classification/TeamProject/{}", p.id),
                format!("Members of the {name} group of {}.", p.name),
            )
        }
        None => (
            "Project Collection Administrators".to_owned(),
            format!("[{}]\\Project Collection Administrators", org.name),
            format!(
                "vstfs:///Framework/IdentityDomain/{}",
                guid(org.seed, TAG_GROUP, 0, 0)
            ),
            "Members of this group can perform all operations in the organization.".to_owned(),
        ),
    };
    let g = |kind: &str| json!({"href": format!("{base}/_apis/Graph/{kind}/{descriptor}")});
    json!({
        "subjectKind": "group",
        "description": description,
        "domain": domain,
        "principalName": principal,
        "mailAddress": null,
        "origin": "vsts",
        "originId": group_id(org, r),
        "displayName": name,
        "_links": {"self": g("Groups"), "memberships": g("Memberships"), "membershipState": g("MembershipStates"), "storageKey": g("StorageKeys")},
        "url": format!("{base}/_apis/Graph/Groups/{descriptor}"),
        "descriptor": descriptor,
    })
}

/// Direct members of a group: administrators one person per project, every person a contributor, a
/// third readers, the team group its team's people.
fn group_has(org: &Org, r: &GroupRef, i: usize) -> bool {
    match (r.project, r.g) {
        (None, _) => i == 0,
        (Some(pi), 0) => i == pi % FIRST_PEOPLE.len(),
        (Some(_), 1) => true,
        (Some(_), 2) => i % 3 == 2,
        (Some(_), _) => in_team(org, 0, i),
    }
}

/// Pages of a generated list with an opaque continuation token in the header.
fn token_page(all: Vec<Value>, q: &[(String, String)]) -> Result<Response> {
    let skip = match param(q, "continuationToken") {
        Some(t) => decode_token(t)?,
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(skip).take(GRAPH_PAGE).cloned().collect();
    let next = skip + page.len();
    let token = (next < all.len()).then(|| encode_token(next));
    Ok(with_continuation(list_body(page), token))
}

fn encode_token(n: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("skip:{n}"))
}

fn decode_token(t: &str) -> Result<usize> {
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("skip:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            AdoError::bad_request(
                "InvalidContinuationTokenException",
                format!("The continuation token '{t}' is not valid."),
            )
        })
}

async fn graph_users(State(sim): Sim, headers: HeaderMap, Query(q): Params) -> Result<Response> {
    let base = base(&sim, &headers);
    let types: Option<Vec<String>> = param(&q, "subjectTypes").map(|t| {
        t.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    });
    let all = (0..sim.org.users)
        .map(|i| person(&sim.org, i))
        .filter(|p| {
            types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == p.origin))
        })
        .map(|p| graph_user_json(&base, &p))
        .collect();
    token_page(all, &q)
}

async fn graph_groups(State(sim): Sim, headers: HeaderMap, Query(q): Params) -> Result<Response> {
    let base = base(&sim, &headers);
    let all = all_groups(&sim.org)
        .iter()
        .map(|r| group_json(&sim.org, &base, r))
        .collect();
    token_page(all, &q)
}

fn subject_not_found(descriptor: &str) -> AdoError {
    AdoError::not_found(
        "GraphSubjectNotFoundException",
        format!("VS860015: The subject with descriptor '{descriptor}' could not be found."),
    )
}

async fn graph_user(
    State(sim): Sim,
    headers: HeaderMap,
    Path(descriptor): Path<String>,
) -> Result<Json<Value>> {
    (0..sim.org.users)
        .map(|i| person(&sim.org, i))
        .find(|p| p.descriptor == descriptor)
        .map(|p| Json(graph_user_json(&base(&sim, &headers), &p)))
        .ok_or_else(|| subject_not_found(&descriptor))
}

async fn graph_group(
    State(sim): Sim,
    headers: HeaderMap,
    Path(descriptor): Path<String>,
) -> Result<Json<Value>> {
    all_groups(&sim.org)
        .iter()
        .find(|r| group_descriptor(&sim.org, r) == descriptor)
        .map(|r| Json(group_json(&sim.org, &base(&sim, &headers), r)))
        .ok_or_else(|| subject_not_found(&descriptor))
}

async fn memberships(
    State(sim): Sim,
    headers: HeaderMap,
    Path(descriptor): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let org = &sim.org;
    let base = base(&sim, &headers);
    let down = param(&q, "direction").is_some_and(|d| d.eq_ignore_ascii_case("down"));
    let groups = all_groups(org);
    let link = |container: &str, member: &str| {
        json!({
            "containerDescriptor": container,
            "memberDescriptor": member,
            "_links": {
                "self": {"href": format!("{base}/_apis/Graph/Memberships/{member}/{container}")},
                "container": {"href": format!("{base}/_apis/Graph/Subjects/{container}")},
                "member": {"href": format!("{base}/_apis/Graph/Subjects/{member}")},
            },
        })
    };
    if let Some(group) = groups
        .iter()
        .find(|r| group_descriptor(org, r) == descriptor)
    {
        // Groups have no containers here; their members are people.
        let value = if down {
            (0..org.users)
                .filter(|&i| group_has(org, group, i))
                .map(|i| link(&descriptor, &person(org, i).descriptor))
                .collect()
        } else {
            Vec::new()
        };
        return Ok(Json(list_body(value)));
    }
    let Some(p) = (0..org.users)
        .map(|i| person(org, i))
        .find(|p| p.descriptor == descriptor)
    else {
        return Err(subject_not_found(&descriptor));
    };
    let value = if down {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|r| group_has(org, r, p.i))
            .map(|r| link(&group_descriptor(org, r), &descriptor))
            .collect()
    };
    Ok(Json(list_body(value)))
}

async fn subject_lookup(
    State(sim): Sim,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>> {
    let org = &sim.org;
    let base = base(&sim, &headers);
    let keys: Vec<&str> = body
        .get("lookupKeys")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            AdoError::bad_request(
                "ArgumentNullException",
                "Value cannot be null. Parameter name: subjectLookup.LookupKeys",
            )
        })?
        .iter()
        .filter_map(|k| k.get("descriptor").and_then(Value::as_str))
        .collect();
    let mut index: HashMap<String, Value> = HashMap::new();
    for r in all_groups(org) {
        index.insert(group_descriptor(org, &r), group_json(org, &base, &r));
    }
    for i in 0..org.users {
        let p = person(org, i);
        index.insert(p.descriptor.clone(), graph_user_json(&base, &p));
    }
    let found: serde_json::Map<String, Value> = keys
        .iter()
        .filter_map(|k| index.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Ok(Json(json!({"count": found.len(), "value": found})))
}

// ---------------------------------------------------------------- entitlements

fn entitlement_json(org: &Org, base: &str, p: &Person, select: Option<&str>) -> Value {
    let wants = |part: &str| select.is_none_or(|s| s.to_ascii_lowercase().contains(part));
    let hp = h(org.seed, TAG_USER, p.i as u64, 9);
    let stakeholder = hp % 4 == 3;
    let created = org.anchor - Duration::days(30 + (hp % 400) as i64);
    let accessed = org.anchor - Duration::hours((hp >> 12) as i64 % (24 * 20));
    let mut v = json!({
        "user": graph_user_json(base, p),
        "id": p.id,
        "lastAccessedDate": fmt_time(accessed),
        "dateCreated": fmt_time(created),
    });
    if wants("license") {
        v["accessLevel"] = json!({
            "licensingSource": "account",
            "accountLicenseType": if stakeholder { "stakeholder" } else { "express" },
            "msdnLicenseType": "none",
            "gitHubLicenseType": "none",
            "licenseDisplayName": if stakeholder { "Stakeholder" } else { "Basic" },
            "status": "active",
            "statusMessage": "",
            "assignmentSource": "unknown",
        });
    }
    if wants("extensions") {
        v["extensions"] = json!([]);
    }
    if wants("projects") {
        v["projectEntitlements"] = Value::Array(
            org.projects
                .iter()
                .enumerate()
                .filter(|(pi, _)| (p.i + pi).is_multiple_of(2))
                .map(|(_, pr)| {
                    json!({
                        "group": {"groupType": "projectContributor", "displayName": "Contributors"},
                        "projectRef": {"id": pr.id, "name": pr.name},
                        "projectPermissionInherited": "notSet",
                    })
                })
                .collect(),
        );
    }
    if wants("grouprules") {
        v["groupAssignments"] = json!([]);
    }
    v
}

async fn entitlements(State(sim): Sim, headers: HeaderMap, Query(q): Params) -> Result<Response> {
    let org = &sim.org;
    let base = base(&sim, &headers);
    let select = param(&q, "select");
    let version = param(&q, "api-version").unwrap_or_default();
    let all: Vec<Value> = (0..org.users)
        .map(|i| entitlement_json(org, &base, &person(org, i), select))
        .collect();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(7);
    if major < 7 {
        // The releases before 7.0 paged with `top`/`skip` and answered `members`.
        let top = int_param(&q, "top")?.unwrap_or(GRAPH_PAGE);
        let skip = int_param(&q, "skip")?.unwrap_or(0);
        let page: Vec<Value> = all.iter().skip(skip).take(top).cloned().collect();
        return Ok(with_continuation(
            json!({"members": page, "continuationToken": null, "totalCount": all.len()}),
            None,
        ));
    }
    // 7.x: the token comes in the body, next to `items`.
    let skip = match param(&q, "continuationToken") {
        Some(t) => decode_token(t)?,
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(skip).take(GRAPH_PAGE).cloned().collect();
    let next = skip + page.len();
    let token = (next < all.len()).then(|| encode_token(next));
    Ok(with_continuation(
        json!({"items": page, "continuationToken": token, "totalCount": all.len()}),
        None,
    ))
}
