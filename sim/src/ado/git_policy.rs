//! Per-repository extras: branches (refs), branch policy configurations and Advanced Security alerts
//! (the advsec host in the cloud). Derived on demand from the repository.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use chrono::Duration;
use serde_json::{Value, json};

use super::AdoSim;
use super::builds::{require_preview, sha, token_page};
use super::faults::AdoError;
use super::org::{Org, Project, Repo, fmt_time, guid, h};
use super::routes::{base, find_repo, param, project};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_REF: u64 = 321;
const TAG_ALERT: u64 = 322;
const REFS_PAGE: usize = 1_000;
const POLICIES_PAGE: usize = 100;
const ALERTS_PAGE: usize = 100;

/// (type id, display name) of the policy types a repository carries.
const POLICY_TYPES: &[(&str, &str)] = &[
    (
        "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd",
        "Minimum number of reviewers",
    ),
    ("40e92b44-2fe1-4dd6-b3d8-74a9c21d0c6e", "Work item linking"),
    ("0609b952-1397-4640-95ec-e00a01b2c241", "Build"),
];
const ALERT_TYPES: &[&str] = &["dependency", "code", "secret"];
const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
const STATES: &[&str] = &["active", "dismissed", "fixed", "active"];

impl Org {
    /// The repository's branches: the default one, the source branch of each pull request, and a
    /// release branch on every third repository. An empty repository has none.
    pub(crate) fn branches(&self, r: &Repo) -> Vec<String> {
        let Some(default) = r.default_branch else {
            return vec![];
        };
        let mut names = vec![default.to_owned()];
        let base = "";
        for pr in self.pull_requests(r) {
            if let Some(b) = self.pull_request_json(base, r, &pr)["sourceRefName"].as_str()
                && !names.iter().any(|n| n == b)
            {
                names.push(b.to_owned());
            }
        }
        if r.global.is_multiple_of(3) {
            names.push("refs/heads/release/1.0".into());
        }
        names.sort();
        names
    }

    fn ref_json(&self, base: &str, p: &Project, r: &Repo, name: &str, i: u64) -> Value {
        json!({
            "name": name,
            "objectId": sha(self.seed, h(self.seed, TAG_REF, r.global, 0), i),
            "creator": self.identity_ref(base, r.global + i),
            "url": format!("{base}/{}/_apis/git/repositories/{}/refs?filter={}", p.id, r.id, name.trim_start_matches("refs/")),
        })
    }

    fn policies(&self, base: &str, p: &Project, r: &Repo) -> Vec<Value> {
        let Some(branch) = r.default_branch else {
            return vec![];
        };
        let hr = h(self.seed, TAG_REF, r.global, 1);
        POLICY_TYPES
            .iter()
            .enumerate()
            // Only repositories built by a pipeline carry a build policy.
            .filter(|(i, _)| *i < 2 || hr.is_multiple_of(2))
            .map(|(i, (type_id, display))| {
                let id = r.global * 4 + i as u64 + 1;
                let scope = json!([{"refName": branch, "matchKind": "Exact", "repositoryId": r.id}]);
                let settings = match i {
                    0 => json!({"minimumApproverCount": 1 + hr % 3, "creatorVoteCounts": false, "allowDownvotes": false, "resetOnSourcePush": true, "scope": scope}),
                    1 => json!({"scope": scope}),
                    _ => json!({"buildDefinitionId": p.pipeline_first, "queueOnSourceUpdateOnly": true, "manualQueueOnly": false, "displayName": null, "validDuration": 720.0, "scope": scope}),
                };
                let url = format!("{base}/{}/_apis/policy/configurations/{id}", p.id);
                json!({
                    "createdBy": self.identity_ref(base, hr >> 3),
                    "createdDate": fmt_time(self.anchor - Duration::days(100 + (hr % 50) as i64)),
                    "isEnabled": true,
                    "isBlocking": i != 1 || (hr >> 4).is_multiple_of(2),
                    "isDeleted": false,
                    "settings": settings,
                    "isEnterpriseManaged": false,
                    "_links": {"self": {"href": url}, "policyType": {"href": format!("{base}/{}/_apis/policy/types/{type_id}", p.id)}},
                    "revision": 1 + hr % 4,
                    "id": id,
                    "url": url,
                    "type": {"id": type_id, "url": format!("{base}/{}/_apis/policy/types/{type_id}", p.id), "displayName": display},
                })
            })
            .collect()
    }

    /// Advanced Security is enabled on two repositories in three.
    pub(crate) fn advsec_enabled(&self, r: &Repo) -> bool {
        r.global % 3 != 2 && r.default_branch.is_some()
    }

    pub(crate) fn alert_json(&self, base: &str, p: &Project, r: &Repo, n: u64) -> Value {
        let ha = h(self.seed, TAG_ALERT, r.global, n);
        let alert_type = ALERT_TYPES[(n as usize - 1) % ALERT_TYPES.len()];
        let state = STATES[(ha % STATES.len() as u64) as usize];
        let first_seen = self.anchor - Duration::days(1 + (ha % 60) as i64);
        let file = match alert_type {
            "dependency" => "package-lock.json",
            "secret" => "config/settings.json",
            _ => "src/handler.ts",
        };
        let mut v = json!({
            "alertId": n,
            "severity": SEVERITIES[((ha >> 8) % SEVERITIES.len() as u64) as usize],
            "title": format!("{alert_type} finding {n} in {}", r.name),
            "tools": [{"name": match alert_type { "dependency" => "AdvancedSecurity-Dependency-Scanning", "secret" => "AdvancedSecurity-Secret-Scanning", _ => "CodeQL" },
                "rules": [{"id": guid(self.seed, TAG_ALERT, n, 7), "friendlyName": format!("{alert_type}/rule-{}", ha % 40), "description": "A simulated rule.", "resources": null, "helpMessage": "Fix it.", "opaqueId": format!("rule-{}", ha % 40), "tags": ["security"]}]}],
            "repositoryUrl": format!("{base}/{}/_git/{}", super::org::enc(&p.name), super::org::enc(&r.name)),
            "gitRef": r.default_branch.unwrap_or("refs/heads/main"),
            "alertType": alert_type,
            "firstSeenDate": fmt_time(first_seen),
            "lastSeenDate": fmt_time(first_seen + Duration::days((ha % 10) as i64)),
            "introducedDate": fmt_time(first_seen),
            "state": state,
            "physicalLocations": [{"filePath": file, "region": {"lineStart": 1 + ha % 200, "lineEnd": 1 + ha % 200, "columnStart": 1, "columnEnd": 20},
                "versionControl": {"itemUrl": format!("{base}/{}/_apis/git/repositories/{}/items?path=/{file}", p.id, r.id), "commitHash": sha(self.seed, r.global, n)}}],
        });
        if state == "fixed" {
            v["fixedDate"] = json!(fmt_time(first_seen + Duration::days(3)));
        }
        if state == "dismissed" {
            v["dismissal"] = json!({"dismissalId": n, "dismissalType": "acceptedRisk", "message": "Accepted", "stateChangedBy": self.identity_ref(base, ha)});
        }
        v
    }
}

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories/{{repositoryId}}/refs"),
            get(list_refs),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/policy/configurations"),
            get(list_policies),
        )
        .route(
            &format!("{o}/{{project}}/_apis/alert/repositories/{{repositoryId}}/alerts"),
            get(list_alerts),
        )
        .route(
            &format!(
                "{o}/{{project}}/_apis/alert/repositories/{{repositoryId}}/alerts/{{alertId}}"
            ),
            get(get_alert),
        )
}

async fn list_refs(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, repo)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let r = find_repo(&sim, p, &repo)?;
    let base = base(&sim, &headers);
    // `filter` is a prefix of the name without `refs/`.
    let filter = param(&q, "filter").map(|f| format!("refs/{}", f.trim_start_matches("refs/")));
    let all = sim
        .org
        .branches(r)
        .iter()
        .enumerate()
        .filter(|(_, n)| filter.as_deref().is_none_or(|f| n.starts_with(f)))
        .map(|(i, n)| sim.org.ref_json(&base, p, r, n, i as u64))
        .collect();
    token_page(all, &q, "refs", "$top", REFS_PAGE)
}

/// Git policy configurations, by repository and, optionally, branch. Documented as a preview API, yet
/// Azure DevOps serves it under released versions too (`7.1`), and without any (the Python peer).
async fn list_policies(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let ov = sim.read_overlay();
    let repo = param(&q, "repositoryId");
    let ref_name = param(&q, "refName");
    let all = p
        .repos
        .iter()
        .filter(|r| !ov.removed_repos.contains(&r.id))
        .filter(|r| repo.is_none_or(|id| r.id.eq_ignore_ascii_case(id)))
        .filter(|r| ref_name.is_none_or(|b| r.default_branch == Some(b)))
        .flat_map(|r| sim.org.policies(&base, p, r))
        .collect();
    drop(ov);
    token_page(all, &q, "policies", "$top", POLICIES_PAGE)
}

fn advsec_repo<'a>(sim: &'a AdoSim, p: &'a Project, key: &str) -> Result<&'a Repo> {
    let r = find_repo(sim, p, key)?;
    if !sim.org.advsec_enabled(r) {
        return Err(AdoError::bad_request(
            "AdvancedSecurityNotEnabledException",
            format!("Advanced Security is not enabled for repository {}.", r.id),
        ));
    }
    Ok(r)
}

fn csv(q: &[(String, String)], key: &str) -> Option<Vec<String>> {
    param(q, key).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    })
}

async fn list_alerts(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, repo)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    require_preview(&q)?;
    let p = project(&sim, &key)?;
    let r = advsec_repo(&sim, p, &repo)?;
    let base = base(&sim, &headers);
    let states = csv(&q, "criteria.states");
    let severities = csv(&q, "criteria.severities").or_else(|| csv(&q, "criteria.severity"));
    let alert_type = param(&q, "criteria.alertType").map(str::to_ascii_lowercase);
    let all = (1..=sim.org.cicd.alerts_per_repo as u64)
        .map(|n| sim.org.alert_json(&base, p, r, n))
        .filter(|a| {
            states
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| a["state"] == x.as_str()))
        })
        .filter(|a| {
            severities
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| a["severity"] == x.as_str()))
        })
        .filter(|a| alert_type.as_deref().is_none_or(|t| a["alertType"] == t))
        .collect();
    token_page(all, &q, "alerts", "$top", ALERTS_PAGE)
}

async fn get_alert(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, repo, id)): Path<(String, String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    require_preview(&q)?;
    let p = project(&sim, &key)?;
    let r = advsec_repo(&sim, p, &repo)?;
    let n = id
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=sim.org.cicd.alerts_per_repo as u64).contains(n))
        .ok_or_else(|| {
            AdoError::not_found(
                "AlertNotFoundException",
                format!("Alert {id} was not found."),
            )
        })?;
    Ok(Json(sim.org.alert_json(&base(&sim, &headers), p, r, n)))
}
