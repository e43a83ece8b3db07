//! Builds and what hangs off them: pipeline runs (the same ids), build timelines (stages), build changes
//! and the commits they name, environments and their deployment records, test runs, test results and
//! code coverage. Everything is derived on demand from (seed, pipeline, build index), so a large org
//! costs nothing until it is asked for.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, http::StatusCode};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::AdoError;
use super::org::{Org, Project, enc, fmt_time, guid, h};
use super::routes::{base, int_param, list_body, param, project, with_continuation};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_BUILD: u64 = 301;
const TAG_STAGE: u64 = 302;
const TAG_CHANGE: u64 = 303;
const TAG_ENV: u64 = 304;
const TAG_TEST: u64 = 305;
const TAG_PLAN: u64 = 306;

/// The Runs API answers at most this many runs per pipeline, newest first, and has no paging.
pub(crate) const RUNS_CAP: usize = 10_000;
/// ADO's default `$top` for the build list.
const BUILDS_PAGE: usize = 1_000;
const CHANGES_PAGE: usize = 50;
const ENVIRONMENTS_PAGE: usize = 50;
const DEPLOYMENT_RECORDS_PAGE: usize = 25;
const TEST_RUNS_PAGE: usize = 100;
/// The most results one page may carry (ADO: 1,000 without details).
const TEST_RESULTS_MAX: usize = 1_000;
/// A project's manual test run (no build): ids far above the build-derived ones.
const MANUAL_RUN_BASE: u64 = 900_000_000;

const STAGES: &[&str] = &["Build", "Test", "Deploy"];
const REASONS: &[&str] = &["individualCI", "manual", "pullRequest", "schedule"];
const ENV_NAMES: &[&str] = &["dev", "staging", "production", "qa", "perf"];

/// Sizes of the CI/CD side of the org.
#[derive(Clone, Debug)]
pub struct CicdSpec {
    pub builds_per_pipeline: usize,
    pub environments_per_project: usize,
    pub release_definitions_per_project: usize,
    pub releases_per_project: usize,
    /// Results of each build's test run.
    pub test_results_per_run: usize,
    /// Advanced Security alerts per onboarded repository.
    pub alerts_per_repo: usize,
}

impl CicdSpec {
    pub fn small() -> Self {
        CicdSpec {
            builds_per_pipeline: 3,
            environments_per_project: 2,
            release_definitions_per_project: 2,
            releases_per_project: 8,
            test_results_per_run: 6,
            alerts_per_repo: 3,
        }
    }

    /// Proportional but modest: 1,000 builds (so 1,000 timelines), 60 environments, 200 releases.
    pub fn large() -> Self {
        CicdSpec {
            builds_per_pipeline: 5,
            environments_per_project: 3,
            release_definitions_per_project: 3,
            releases_per_project: 10,
            test_results_per_run: 20,
            alerts_per_repo: 2,
        }
    }
}

/// One generated build (= pipeline run).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Build {
    pub id: u64,
    pub project: usize,
    /// Pipeline index within the project.
    pub k: usize,
    pub pipeline_id: u64,
    pub completed: bool,
    pub result: &'static str,
    pub queued: DateTime<Utc>,
    pub hash: u64,
}

impl Build {
    pub fn finished(&self) -> Option<DateTime<Utc>> {
        self.completed
            .then(|| self.queued + Duration::minutes(3 + (self.hash % 20) as i64))
    }
    pub fn number(&self) -> String {
        format!("{}.{}", self.queued.format("%Y%m%d"), 1 + self.id % 9)
    }
    pub fn started(&self) -> DateTime<Utc> {
        self.queued + Duration::seconds(5 + (self.hash % 50) as i64)
    }
}

/// A 40-hex commit id derived from (seed, a, b).
pub(crate) fn sha(seed: u64, a: u64, b: u64) -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        h(seed, TAG_CHANGE, a, b),
        h(seed, TAG_CHANGE, b, a ^ 0x55),
        h(seed, TAG_CHANGE, a ^ b, 11) as u32
    )
}

impl Org {
    pub(crate) fn builds_of_pipeline(&self, p: &Project, k: usize) -> Vec<Build> {
        let n = self.cicd.builds_per_pipeline as u64;
        let pipeline_id = p.pipeline_first + k as u64;
        let project = self
            .projects
            .iter()
            .position(|q| q.id == p.id)
            .unwrap_or_default();
        (0..n)
            .rev()
            .map(|b| {
                let hb = h(self.seed, TAG_BUILD, pipeline_id, b);
                // The newest build of every fourth pipeline is still running.
                let completed = !(b + 1 == n && k % 4 == 3);
                let result = if !completed {
                    ""
                } else {
                    match hb % 20 {
                        0..=13 => "succeeded",
                        14..=16 => "failed",
                        17..=18 => "partiallySucceeded",
                        _ => "canceled",
                    }
                };
                Build {
                    id: (pipeline_id - 1) * n + b + 1,
                    project,
                    k,
                    pipeline_id,
                    completed,
                    result,
                    queued: self.anchor
                        - Duration::hours(((n - b) * 6) as i64)
                        - Duration::minutes((hb % 180) as i64),
                    hash: hb,
                }
            })
            .collect()
    }

    /// Every build of a project, newest first (the list's `queueTimeDescending` order).
    pub(crate) fn builds_of_project(&self, p: &Project) -> Vec<Build> {
        let mut all: Vec<Build> = (0..p.pipelines)
            .flat_map(|k| self.builds_of_pipeline(p, k))
            .collect();
        all.sort_by(|a, b| b.queued.cmp(&a.queued).then(b.id.cmp(&a.id)));
        all
    }

    pub(crate) fn build_by_id(&self, p: &Project, id: u64) -> Option<Build> {
        let n = self.cicd.builds_per_pipeline as u64;
        if id == 0 || n == 0 {
            return None;
        }
        let pipeline_id = (id - 1) / n + 1;
        let k = pipeline_id.checked_sub(p.pipeline_first)? as usize;
        if k >= p.pipelines {
            return None;
        }
        self.builds_of_pipeline(p, k)
            .into_iter()
            .find(|b| b.id == id)
    }

    pub(crate) fn pipeline_name(&self, p: &Project, k: usize) -> String {
        match p.repos.get(k % p.repos.len().max(1)) {
            Some(r) if k < p.repos.len() => format!("{}-ci", r.name),
            _ => format!("{}-pipeline-{k}", p.name.to_lowercase().replace(' ', "-")),
        }
    }

    pub(crate) fn build_repo<'a>(&self, p: &'a Project, k: usize) -> Option<&'a super::org::Repo> {
        p.repos
            .iter()
            .cycle()
            .skip(k % p.repos.len().max(1))
            .take(p.repos.len())
            .find(|r| !r.disabled && r.default_branch.is_some())
    }

    pub(crate) fn build_source_version(&self, b: &Build) -> String {
        sha(self.seed, b.id, 0)
    }

    pub(crate) fn build_json(&self, base: &str, b: &Build) -> Value {
        let p = &self.projects[b.project];
        let name = self.pipeline_name(p, b.k);
        let revision = 1 + h(self.seed, 5, b.pipeline_id, 0) % 20;
        let url = format!("{base}/{}/_apis/build/Builds/{}", p.id, b.id);
        let requested = self.identity_ref(base, b.hash >> 5);
        let repo = self.build_repo(p, b.k);
        let branch = repo
            .and_then(|r| r.default_branch)
            .unwrap_or("refs/heads/main");
        let plan = guid(self.seed, TAG_PLAN, b.id, 0);
        let mut v = json!({
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{base}/{}/_build/results?buildId={}", p.id, b.id)},
                "sourceVersionDisplayUri": {"href": format!("{url}/sources")},
                "timeline": {"href": format!("{url}/Timeline")},
                "badge": {"href": format!("{base}/{}/_apis/build/status/{}", p.id, b.pipeline_id)},
            },
            "properties": {},
            "tags": [],
            "validationResults": [],
            "plans": [{"planId": plan}],
            "triggerInfo": {},
            "id": b.id,
            "buildNumber": b.number(),
            "status": if b.completed { "completed" } else { "inProgress" },
            "queueTime": fmt_time(b.queued),
            "startTime": fmt_time(b.started()),
            "url": url,
            "definition": {
                "drafts": [],
                "id": b.pipeline_id,
                "name": name,
                "url": format!("{base}/{}/_apis/build/Definitions/{}?revision={revision}", p.id, b.pipeline_id),
                "uri": format!("vstfs:///Build/Definition/{}", b.pipeline_id),
                "path": if b.k.is_multiple_of(2) { "\\" } else { "\\services" },
                "type": "build",
                "queueStatus": "enabled",
                "revision": revision,
                "project": self.project_json(base, p),
            },
            "buildNumberRevision": 1 + b.id % 9,
            "project": self.project_json(base, p),
            "uri": format!("vstfs:///Build/Build/{}", b.id),
            "sourceBranch": branch,
            "sourceVersion": self.build_source_version(b),
            "queue": {"id": 9, "name": "Azure Pipelines", "pool": {"id": 9, "name": "Azure Pipelines", "isHosted": true}},
            "priority": "normal",
            "reason": REASONS[(b.hash % 4) as usize],
            "requestedFor": requested,
            "requestedBy": requested,
            "lastChangedDate": fmt_time(b.finished().unwrap_or(b.started())),
            "lastChangedBy": requested,
            "orchestrationPlan": {"planId": plan},
            "logs": {"id": 0, "type": "Container", "url": format!("{url}/logs")},
            "retainedByRelease": false,
            "triggeredByBuild": null,
            "appendCommitMessageToRunName": true,
        });
        if let Some(r) = repo {
            v["repository"] = json!({
                "id": r.id, "type": "TfsGit", "name": r.name,
                "url": format!("{base}/{}/_git/{}", enc(&p.name), enc(&r.name)),
                "clean": null, "checkoutSubmodules": false,
            });
        }
        if let Some(f) = b.finished() {
            v["finishTime"] = json!(fmt_time(f));
            v["result"] = json!(b.result);
        }
        v
    }

    /// The pipeline reference a run carries (`pipeline` of the Runs API and of run events).
    pub(crate) fn pipeline_ref(&self, base: &str, p: &Project, k: usize) -> Value {
        let pipeline_id = p.pipeline_first + k as u64;
        let revision = 1 + h(self.seed, 5, pipeline_id, 0) % 20;
        json!({
            "url": format!("{base}/{}/_apis/pipelines/{pipeline_id}?revision={revision}", p.id),
            "id": pipeline_id,
            "revision": revision,
            "name": self.pipeline_name(p, k),
            "folder": if k.is_multiple_of(2) { "\\" } else { "\\services" },
        })
    }

    /// A pipeline run: the Runs API's view of a build.
    pub(crate) fn run_json(&self, base: &str, b: &Build) -> Value {
        let p = &self.projects[b.project];
        let pipeline = self.pipeline_ref(base, p, b.k);
        let pipeline_url = pipeline["url"].clone();
        let url = format!(
            "{base}/{}/_apis/pipelines/{}/runs/{}",
            p.id, b.pipeline_id, b.id
        );
        let mut v = json!({
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{base}/{}/_build/results?buildId={}", p.id, b.id)},
                "pipeline.web": {"href": format!("{base}/{}/_build/definition?definitionId={}", p.id, b.pipeline_id)},
                "pipeline": {"href": pipeline_url},
            },
            "pipeline": pipeline,
            "state": if b.completed { "completed" } else { "inProgress" },
            "createdDate": fmt_time(b.queued),
            "url": url,
            "id": b.id,
            "name": b.number(),
        });
        if let Some(f) = b.finished() {
            v["finishedDate"] = json!(fmt_time(f));
            // The Runs API knows no partial success.
            v["result"] = json!(match b.result {
                "partiallySucceeded" => "succeeded",
                r => r,
            });
        }
        v
    }

    fn stages_of(&self, b: &Build) -> &'static [&'static str] {
        if b.k.is_multiple_of(2) {
            STAGES
        } else {
            &STAGES[..2]
        }
    }

    pub(crate) fn timeline_json(&self, base: &str, b: &Build) -> Value {
        let p = &self.projects[b.project];
        let stages = self.stages_of(b);
        let mut records = Vec::new();
        let mut at = b.started();
        for (i, stage) in stages.iter().enumerate() {
            let last = i + 1 == stages.len();
            let running = !b.completed && last;
            let stage_id = guid(self.seed, TAG_STAGE, b.id, i as u64);
            let job_id = guid(self.seed, TAG_STAGE, b.id, 100 + i as u64);
            let end = at + Duration::seconds(40 + (b.hash >> (i * 4)) as i64 % 200);
            let result = if running {
                Value::Null
            } else if last {
                json!(match b.result {
                    "partiallySucceeded" => "succeededWithIssues",
                    r => r,
                })
            } else {
                json!("succeeded")
            };
            let record = |id: &str, parent: Option<&str>, kind: &str, name: &str, order: usize| {
                json!({
                    "previousAttempts": [],
                    "id": id,
                    "parentId": parent,
                    "type": kind,
                    "name": name,
                    "startTime": fmt_time(at),
                    "finishTime": if running { Value::Null } else { json!(fmt_time(end)) },
                    "currentOperation": null,
                    "percentComplete": null,
                    "state": if running { "inProgress" } else { "completed" },
                    "result": result,
                    "resultCode": null,
                    "changeId": 3 + order,
                    "lastModified": fmt_time(end),
                    "workerName": if kind == "Job" { json!("Hosted Agent") } else { Value::Null },
                    "order": order,
                    "details": null,
                    "errorCount": u64::from(result == "failed"),
                    "warningCount": 0,
                    "url": null,
                    "log": null,
                    "task": null,
                    "attempt": 1,
                    "identifier": name.replace(' ', "_"),
                })
            };
            records.push(record(&stage_id, None, "Stage", stage, i + 1));
            records.push(record(
                &job_id,
                Some(&stage_id),
                "Job",
                &format!("{stage} job"),
                1,
            ));
            at = end;
        }
        json!({
            "records": records,
            "lastChangedBy": "00000002-0000-8888-8000-000000000000",
            "lastChangedOn": fmt_time(b.finished().unwrap_or(at)),
            "id": guid(self.seed, TAG_PLAN, b.id, 0),
            "changeId": 3 + records.len(),
            "url": format!("{base}/{}/_apis/build/builds/{}/Timeline/{}", p.id, b.id, guid(self.seed, TAG_PLAN, b.id, 0)),
        })
    }

    /// The commits a build consumed: none for every fourth build (a manual re-run), else one to four.
    pub(crate) fn build_changes(&self, base: &str, b: &Build) -> Vec<Value> {
        let n = if b.id.is_multiple_of(4) {
            0
        } else {
            1 + (b.hash >> 9) % 4
        };
        let p = &self.projects[b.project];
        let repo = self.build_repo(p, b.k);
        (0..n)
            .map(|i| {
                let id = if i == 0 {
                    self.build_source_version(b)
                } else {
                    sha(self.seed, b.id, i)
                };
                let at = b.queued - Duration::minutes((i * 47 + (b.hash >> 20) % 30) as i64);
                let author = self.identity_ref(base, (b.hash >> 13) + i);
                let location = repo.map(|r| {
                    format!("{base}/{}/_apis/git/repositories/{}/commits/{id}", p.id, r.id)
                });
                json!({
                    "id": id,
                    "message": format!("Change {} for build {}", i + 1, b.number()),
                    "type": "TfsGit",
                    "author": author,
                    "timestamp": fmt_time(at),
                    "location": location,
                    "displayUri": repo.map(|r| format!("{base}/{}/_git/{}/commit/{id}", enc(&p.name), enc(&r.name))),
                })
            })
            .collect()
    }

    pub(crate) fn commit_json(&self, base: &str, p: &Project, repo_id: &str, id: &str) -> Value {
        let hc = id
            .bytes()
            .fold(self.seed, |acc, c| h(acc, TAG_CHANGE, c as u64, 1));
        let who = self.user(hc);
        let date = fmt_time(self.anchor - Duration::minutes((hc % (60 * 24 * 30)) as i64));
        let url = format!(
            "{base}/{}/_apis/git/repositories/{repo_id}/commits/{id}",
            p.id
        );
        json!({
            "treeId": sha(self.seed, hc, 3),
            "commitId": id,
            "author": {"name": who.display_name, "email": who.unique_name, "date": date},
            "committer": {"name": who.display_name, "email": who.unique_name, "date": date},
            "comment": "Simulated commit",
            "parents": [sha(self.seed, hc, 4)],
            "url": url,
            "remoteUrl": format!("{base}/{}/_git/{repo_id}/commit/{id}", enc(&p.name)),
            "_links": {"self": {"href": url}},
        })
    }

    // ---- environments ----

    pub(crate) fn environment_count(&self) -> usize {
        self.cicd.environments_per_project.min(ENV_NAMES.len())
    }

    pub(crate) fn environment_json(&self, base: &str, pi: usize, e: usize) -> Value {
        let p = &self.projects[pi];
        let n = self.environment_count() as u64;
        let id = pi as u64 * n + e as u64 + 1;
        let he = h(self.seed, TAG_ENV, id, 0);
        let created = self.anchor - Duration::days(30 + (he % 300) as i64);
        json!({
            "id": id,
            "name": ENV_NAMES[e],
            "description": format!("The {} environment of {}", ENV_NAMES[e], p.name),
            "createdBy": self.identity_ref(base, he >> 3),
            "createdOn": fmt_time(created),
            "lastModifiedBy": self.identity_ref(base, he >> 5),
            "lastModifiedOn": fmt_time(created + Duration::days((he % 20) as i64)),
            "project": {"id": p.id, "name": null},
        })
    }

    /// The builds that deployed to environment `e`: those of the pipelines with `k % envs == e` that
    /// have a Deploy stage, newest first.
    pub(crate) fn deployment_records(&self, base: &str, pi: usize, e: usize) -> Vec<Value> {
        let p = &self.projects[pi];
        let n = self.environment_count().max(1);
        let env_id = pi as u64 * n as u64 + e as u64 + 1;
        let mut builds: Vec<Build> = (0..p.pipelines)
            .filter(|k| k % n == e && k.is_multiple_of(2))
            .flat_map(|k| self.builds_of_pipeline(p, k))
            .collect();
        builds.sort_by(|a, b| b.queued.cmp(&a.queued).then(b.id.cmp(&a.id)));
        builds
            .iter()
            .map(|b| {
                let mut v = json!({
                    "id": b.id * 10 + e as u64,
                    "environmentId": env_id,
                    "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
                    "definition": {
                        "id": b.pipeline_id,
                        "name": self.pipeline_name(p, b.k),
                        "_links": {"web": {"href": format!("{base}/{}/_build/definition?definitionId={}", p.id, b.pipeline_id)}},
                    },
                    "owner": {
                        "id": b.id,
                        "name": b.number(),
                        "_links": {"web": {"href": format!("{base}/{}/_build/results?buildId={}", p.id, b.id)}},
                    },
                    "planId": guid(self.seed, TAG_PLAN, b.id, 0),
                    "planType": "Build",
                    "scopeId": p.id,
                    "stageName": "Deploy",
                    "jobName": "Deploy",
                    "stageAttempt": 1,
                    "jobAttempt": 1,
                    "queueTime": fmt_time(b.queued),
                    "startTime": fmt_time(b.started()),
                });
                if let Some(f) = b.finished() {
                    v["finishTime"] = json!(fmt_time(f));
                    v["result"] = json!(b.result);
                }
                v
            })
            .collect()
    }

    // ---- tests ----

    /// Test runs of a project: one per completed build, plus one manual run without a build.
    pub(crate) fn test_runs(&self, p: &Project) -> Vec<(u64, Option<Build>)> {
        let pi = self
            .projects
            .iter()
            .position(|q| q.id == p.id)
            .unwrap_or_default();
        let mut builds: Vec<Build> = self
            .builds_of_project(p)
            .into_iter()
            .filter(|b| b.completed)
            .collect();
        builds.sort_by_key(|b| b.id);
        let mut runs: Vec<(u64, Option<Build>)> = builds
            .into_iter()
            .map(|b| (b.id * 10 + 1, Some(b)))
            .collect();
        runs.push((MANUAL_RUN_BASE + pi as u64, None));
        runs
    }

    pub(crate) fn test_run_by_id(&self, p: &Project, id: u64) -> Option<(u64, Option<Build>)> {
        if id >= MANUAL_RUN_BASE {
            let pi = self.projects.iter().position(|q| q.id == p.id)?;
            return (id == MANUAL_RUN_BASE + pi as u64).then_some((id, None));
        }
        if id % 10 != 1 {
            return None;
        }
        let b = self.build_by_id(p, id / 10).filter(|b| b.completed)?;
        Some((id, Some(b)))
    }

    fn test_total(&self, run: u64, build: &Option<Build>) -> u64 {
        match build {
            Some(_) => self.cicd.test_results_per_run as u64,
            None => 1 + run % 3,
        }
    }

    fn test_outcome(&self, run: u64, i: u64) -> &'static str {
        if h(self.seed, TAG_TEST, run, i).is_multiple_of(9) {
            "Failed"
        } else {
            "Passed"
        }
    }

    pub(crate) fn test_run_json(
        &self,
        base: &str,
        p: &Project,
        run: u64,
        build: &Option<Build>,
    ) -> Value {
        let total = self.test_total(run, build);
        let failed = (0..total)
            .filter(|&i| self.test_outcome(run, i) == "Failed")
            .count() as u64;
        let started = match build {
            Some(b) => b.started() + Duration::minutes(1),
            None => self.anchor - Duration::days(2),
        };
        let url = format!("{base}/{}/_apis/test/Runs/{run}", p.id);
        let mut v = json!({
            "id": run,
            "name": match build {
                Some(b) => format!("{} tests", self.pipeline_name(p, b.k)),
                None => "Manual smoke test".to_owned(),
            },
            "url": url,
            "isAutomated": build.is_some(),
            "owner": self.identity_ref(base, run >> 1),
            "project": {"id": p.id, "name": p.name, "url": format!("{base}/_apis/projects/{}", p.id)},
            "startedDate": fmt_time(started),
            "completedDate": fmt_time(started + Duration::minutes(2)),
            "state": "Completed",
            "totalTests": total,
            "incompleteTests": 0,
            "notApplicableTests": 0,
            "passedTests": total - failed,
            "unanalyzedTests": failed,
            "revision": 3,
            "webAccessUrl": format!("{base}/{}/_TestManagement/Runs?runId={run}&_a=runCharts", p.id),
        });
        if let Some(b) = build {
            v["build"] = json!({"id": b.id.to_string(), "name": b.number(), "url": format!("{base}/_apis/build/Builds/{}", b.id)});
            v["pipelineReference"] = json!({"pipelineId": b.id, "stageReference": {"stageName": "Test"}, "phaseReference": {"phaseName": "Job"}, "jobReference": {"jobName": "Test job"}});
            v["buildConfiguration"] = json!({"id": b.id, "number": b.number(), "uri": format!("vstfs:///Build/Build/{}", b.id), "flavor": "Release", "platform": "Any CPU", "buildDefinitionId": b.pipeline_id, "project": {"id": p.id, "name": p.name}});
        }
        v
    }

    pub(crate) fn test_result_json(
        &self,
        base: &str,
        p: &Project,
        run: u64,
        build: &Option<Build>,
        i: u64,
    ) -> Value {
        let outcome = self.test_outcome(run, i);
        let name = format!("Tests.Suite{}.Case{}", i % 7, i);
        let mut v = json!({
            "id": 100_000 + i,
            "project": {"id": p.id, "name": p.name, "url": format!("{base}/_apis/projects/{}", p.id)},
            "startedDate": fmt_time(self.anchor - Duration::days(1)),
            "completedDate": fmt_time(self.anchor - Duration::days(1) + Duration::seconds(2)),
            "durationInMs": 10 + h(self.seed, TAG_TEST, run, i) % 2000,
            "outcome": outcome,
            "revision": 1,
            "state": "Completed",
            "testCase": {"name": name},
            "testRun": {"id": run.to_string(), "name": "test run", "url": format!("{base}/{}/_apis/test/Runs/{run}", p.id)},
            "lastUpdatedDate": fmt_time(self.anchor - Duration::days(1)),
            "priority": 0,
            "computerName": "fv-az123",
            "createdDate": fmt_time(self.anchor - Duration::days(1)),
            "url": format!("{base}/{}/_apis/test/Runs/{run}/Results/{}", p.id, 100_000 + i),
            "failureType": "None",
            "automatedTestName": name,
            "automatedTestStorage": "tests.dll",
            "automatedTestType": "UnitTest",
            "testCaseTitle": format!("Case{i}"),
            "testCaseReferenceId": 1000 + i,
        });
        if let Some(b) = build {
            v["build"] = json!({"id": b.id.to_string(), "name": b.number(), "url": format!("{base}/_apis/build/Builds/{}", b.id)});
        }
        if outcome == "Failed" {
            v["errorMessage"] = json!("Assert.AreEqual failed.");
        }
        v
    }
}

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(&format!("{o}/{{project}}/_apis/build/builds"), get(list_builds))
        .route(
            &format!("{o}/{{project}}/_apis/build/definitions/{{definitionId}}"),
            get(get_definition),
        )
        .route(&format!("{o}/{{project}}/_apis/build/builds/{{buildId}}"), get(get_build))
        .route(
            &format!("{o}/{{project}}/_apis/build/builds/{{buildId}}/timeline"),
            get(timeline),
        )
        .route(
            &format!("{o}/{{project}}/_apis/build/builds/{{buildId}}/changes"),
            get(changes),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories/{{repositoryId}}/commits/{{commitId}}"),
            get(commit),
        )
        .route(
            &format!("{o}/{{project}}/_apis/pipelines/{{pipelineId}}/runs"),
            get(list_runs).post(super::runs::run_pipeline),
        )
        .route(
            &format!("{o}/{{project}}/_apis/pipelines/{{pipelineId}}/runs/{{runId}}"),
            get(get_run),
        )
        .route(
            &format!("{o}/{{project}}/_apis/distributedtask/environments"),
            get(list_environments),
        )
        .route(
            &format!("{o}/{{project}}/_apis/distributedtask/environments/{{environmentId}}"),
            get(get_environment),
        )
        .route(
            &format!("{o}/{{project}}/_apis/distributedtask/environments/{{environmentId}}/environmentdeploymentrecords"),
            get(deployment_records),
        )
        .route(&format!("{o}/{{project}}/_apis/test/runs"), get(list_test_runs))
        .route(&format!("{o}/{{project}}/_apis/test/Runs/{{runId}}/results"), get(test_results))
        .route(&format!("{o}/{{project}}/_apis/test/codecoverage"), get(code_coverage))
}

// ---------------------------------------------------------------- helpers

pub(crate) fn offset_token(kind: &str, offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{offset}"))
}

/// Reads an opaque offset token (clients must echo tokens, not compute them).
pub(crate) fn offset_from(q: &[(String, String)], kind: &str) -> Result<usize> {
    let Some(t) = param(q, "continuationToken") else {
        return Ok(0);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.strip_prefix(&format!("{kind}:"))
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| {
            AdoError::bad_request(
                "InvalidContinuationTokenException",
                format!("The continuation token '{t}' is not valid."),
            )
        })
}

/// One page of `all` from the token's offset, with the next token in the header.
pub(crate) fn token_page(
    all: Vec<Value>,
    q: &[(String, String)],
    kind: &str,
    top_key: &str,
    default_top: usize,
) -> Result<Response> {
    let top = int_param(q, top_key)?.unwrap_or(default_top).max(1);
    let skip = offset_from(q, kind)?;
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(skip).take(top).collect();
    let next = skip + page.len();
    let token = (next < total).then(|| offset_token(kind, next));
    Ok(with_continuation(list_body(page), token))
}

/// APIs that exist only as previews refuse a released version, as ADO does.
pub(crate) fn require_preview(q: &[(String, String)]) -> Result<()> {
    let v = param(q, "api-version").unwrap_or_default();
    if v.contains("-preview") {
        Ok(())
    } else {
        Err(AdoError::bad_request(
            "VssInvalidPreviewVersionException",
            format!(
                "VS800071: The requested version \"{v}\" of the resource is under preview. The -preview flag must be supplied in the api-version for such requests. For example: \"{v}-preview\""
            ),
        ))
    }
}

pub(crate) fn id_of(raw: &str, what: &'static str) -> Result<u64> {
    raw.parse().map_err(|_| {
        AdoError::bad_request(
            "ArgumentException",
            format!("The value '{raw}' is not a valid {what} id."),
        )
    })
}

fn build_missing(id: u64) -> AdoError {
    AdoError::not_found(
        "BuildNotFoundException",
        format!("The requested build {id} could not be found."),
    )
}

fn project_index(sim: &AdoSim, p: &Project) -> usize {
    sim.org
        .projects
        .iter()
        .position(|x| x.id == p.id)
        .unwrap_or_default()
}

fn time_param(q: &[(String, String)], key: &str) -> Result<Option<DateTime<Utc>>> {
    param(q, key)
        .map(|v| {
            super::wiql::parse_datetime(v)
                .map(|(t, _)| t)
                .ok_or_else(|| {
                    AdoError::bad_request(
                        "ArgumentException",
                        format!("The value '{v}' is not a valid date for {key}."),
                    )
                })
        })
        .transpose()
}

// ---------------------------------------------------------------- handlers

async fn list_builds(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let definitions: Option<Vec<u64>> = param(&q, "definitions")
        .map(|d| d.split(',').filter_map(|s| s.trim().parse().ok()).collect());
    let ids: Option<Vec<u64>> =
        param(&q, "buildIds").map(|d| d.split(',').filter_map(|s| s.trim().parse().ok()).collect());
    let (min, max) = (time_param(&q, "minTime")?, time_param(&q, "maxTime")?);
    let mut builds = sim.org.builds_of_project(p);
    if param(&q, "queryOrder").is_some_and(|o| o.eq_ignore_ascii_case("queueTimeAscending")) {
        builds.reverse();
    }
    let all: Vec<Value> = builds
        .iter()
        .filter(|b| {
            definitions
                .as_ref()
                .is_none_or(|d| d.contains(&b.pipeline_id))
        })
        .filter(|b| ids.as_ref().is_none_or(|d| d.contains(&b.id)))
        .filter(|b| min.is_none_or(|m| b.queued >= m) && max.is_none_or(|m| b.queued <= m))
        .map(|b| sim.org.build_json(&base, b))
        .collect();
    token_page(all, &q, "builds", "$top", BUILDS_PAGE)
}

/// A build definition (the pipeline's classic view), with the repository it builds.
async fn get_definition(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let k = pipeline_index(p, &id)?;
    let base = base(&sim, &headers);
    let pipeline_id = p.pipeline_first + k as u64;
    let revision = 1 + h(sim.org.seed, 5, pipeline_id, 0) % 20;
    let mut v = json!({
        "id": pipeline_id,
        "name": sim.org.pipeline_name(p, k),
        "url": format!("{base}/{}/_apis/build/Definitions/{pipeline_id}?revision={revision}", p.id),
        "uri": format!("vstfs:///Build/Definition/{pipeline_id}"),
        "path": if k.is_multiple_of(2) { "\\" } else { "\\services" },
        "type": "build",
        "queueStatus": "enabled",
        "revision": revision,
        "quality": "definition",
        "process": {"yamlFilename": "azure-pipelines.yml", "type": 2},
        "project": sim.org.project_json(&base, p),
    });
    if let Some(r) = sim.org.build_repo(p, k) {
        v["repository"] = json!({
            "properties": {"cloneUrl": format!("{base}/{}/_git/{}", enc(&p.name), enc(&r.name)), "fullName": r.name, "defaultBranch": r.default_branch, "isPrivate": "True"},
            "id": r.id, "type": "TfsGit", "name": r.name,
            "url": format!("{base}/{}/_git/{}", enc(&p.name), enc(&r.name)),
            "defaultBranch": r.default_branch, "clean": null, "checkoutSubmodules": false,
        });
    }
    Ok(Json(v))
}

async fn get_build(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let id = id_of(&id, "build")?;
    let b = sim
        .org
        .build_by_id(p, id)
        .ok_or_else(|| build_missing(id))?;
    Ok(Json(sim.org.build_json(&base(&sim, &headers), &b)))
}

async fn timeline(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let id = id_of(&id, "build")?;
    let b = sim
        .org
        .build_by_id(p, id)
        .ok_or_else(|| build_missing(id))?;
    Ok(Json(sim.org.timeline_json(&base(&sim, &headers), &b)))
}

async fn changes(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let id = id_of(&id, "build")?;
    let b = sim
        .org
        .build_by_id(p, id)
        .ok_or_else(|| build_missing(id))?;
    token_page(
        sim.org.build_changes(&base(&sim, &headers), &b),
        &q,
        "changes",
        "$top",
        CHANGES_PAGE,
    )
}

async fn commit(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, repo, id)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let r = super::routes::find_repo(&sim, p, &repo)?;
    if id.len() != 40 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AdoError::not_found(
            "GitUnresolvableToCommitException",
            format!(
                "TF401175: The version descriptor <Commit: {id}> could not be resolved to a version in the repository {}",
                r.name
            ),
        ));
    }
    Ok(Json(sim.org.commit_json(
        &base(&sim, &headers),
        p,
        &r.id,
        &id,
    )))
}

pub(crate) fn pipeline_index(p: &Project, raw: &str) -> Result<usize> {
    raw.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_sub(p.pipeline_first))
        .filter(|&k| k < p.pipelines as u64)
        .map(|k| k as usize)
        .ok_or_else(|| {
            AdoError::not_found(
                "PipelineNotFoundException",
                format!("Pipeline with id {raw} not found."),
            )
        })
}

/// Runs List: newest first, at most 10,000, no paging (as the real API).
async fn list_runs(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, pid)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let k = pipeline_index(p, &pid)?;
    let base = base(&sim, &headers);
    // Runs a client started are the newest.
    let mut value = super::runs::started_runs_of(&sim, &base, project_index(&sim, p), k);
    value.extend(
        sim.org
            .builds_of_pipeline(p, k)
            .iter()
            .map(|b| sim.org.run_json(&base, b)),
    );
    value.truncate(RUNS_CAP);
    Ok(Json(list_body(value)))
}

async fn get_run(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, pid, run)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let k = pipeline_index(p, &pid)?;
    let id = id_of(&run, "run")?;
    let base = base(&sim, &headers);
    if let Some(v) = super::runs::started_run(&sim, &base, project_index(&sim, p), k, id) {
        return Ok(Json(v));
    }
    let b = sim
        .org
        .build_by_id(p, id)
        .filter(|b| b.k == k)
        .ok_or_else(|| {
            AdoError::not_found(
                "PipelineRunNotFoundException",
                format!("Run {id} of pipeline {pid} not found."),
            )
        })?;
    let mut v = sim.org.run_json(&base, &b);
    // The single GET also names the resources the run used.
    v["resources"] = json!({"repositories": {"self": {"refName": "refs/heads/main", "version": sim.org.build_source_version(&b)}}});
    v["templateParameters"] = json!({});
    Ok(Json(v))
}

async fn list_environments(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    require_preview(&q)?;
    let p = project(&sim, &key)?;
    let pi = sim
        .org
        .projects
        .iter()
        .position(|x| x.id == p.id)
        .unwrap_or_default();
    let base = base(&sim, &headers);
    let all = (0..sim.org.environment_count())
        .map(|e| sim.org.environment_json(&base, pi, e))
        .collect();
    token_page(all, &q, "environments", "$top", ENVIRONMENTS_PAGE)
}

/// The (project index, environment index) of an environment id of project `p`.
fn environment_of(sim: &AdoSim, p: &Project, env: &str) -> Result<(usize, usize)> {
    let pi = sim
        .org
        .projects
        .iter()
        .position(|x| x.id == p.id)
        .unwrap_or_default();
    let n = sim.org.environment_count() as u64;
    env.parse::<u64>()
        .ok()
        .and_then(|id| id.checked_sub(pi as u64 * n + 1))
        .filter(|&e| e < n)
        .map(|e| (pi, e as usize))
        .ok_or_else(|| {
            AdoError::not_found(
                "EnvironmentNotFoundException",
                format!("Environment {env} not found."),
            )
        })
}

async fn get_environment(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, env)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    require_preview(&q)?;
    let p = project(&sim, &key)?;
    let (pi, e) = environment_of(&sim, p, &env)?;
    Ok(Json(sim.org.environment_json(&base(&sim, &headers), pi, e)))
}

/// Deployment records page with `top` (no `$`), as documented.
async fn deployment_records(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, env)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    require_preview(&q)?;
    let p = project(&sim, &key)?;
    let (pi, e) = environment_of(&sim, p, &env)?;
    let all = sim.org.deployment_records(&base(&sim, &headers), pi, e);
    token_page(all, &q, "records", "top", DEPLOYMENT_RECORDS_PAGE)
}

async fn list_test_runs(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let build_uri = param(&q, "buildUri").map(str::to_owned);
    let top = int_param(&q, "$top")?
        .unwrap_or(TEST_RUNS_PAGE)
        .min(TEST_RUNS_PAGE);
    let skip = int_param(&q, "$skip")?.unwrap_or(0);
    let value = sim
        .org
        .test_runs(p)
        .into_iter()
        .filter(|(_, b)| {
            build_uri.as_deref().is_none_or(|u| {
                b.as_ref().is_some_and(|b| {
                    u.eq_ignore_ascii_case(&format!("vstfs:///Build/Build/{}", b.id))
                })
            })
        })
        .skip(skip)
        .take(top)
        .map(|(run, b)| sim.org.test_run_json(&base, p, run, &b))
        .collect();
    Ok(Json(list_body(value)))
}

async fn test_results(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, run)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let id = id_of(&run, "run")?;
    let (run, build) = sim.org.test_run_by_id(p, id).ok_or_else(|| {
        AdoError::not_found(
            "TestObjectNotFoundException",
            format!("Test run {id} not found"),
        )
    })?;
    let top = int_param(&q, "$top")?.unwrap_or(TEST_RESULTS_MAX);
    if top > TEST_RESULTS_MAX {
        return Err(AdoError::bad_request(
            "InvalidPropertyException",
            format!("$top must be at most {TEST_RESULTS_MAX}."),
        ));
    }
    let skip = int_param(&q, "$skip")?.unwrap_or(0) as u64;
    let total = sim.org.test_total(run, &build);
    let base = base(&sim, &headers);
    let value = (skip..total)
        .take(top)
        .map(|i| sim.org.test_result_json(&base, p, run, &build, i))
        .collect();
    Ok(Json(list_body(value)))
}

async fn code_coverage(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    require_preview(&q)?;
    let p = project(&sim, &key)?;
    let build_id = param(&q, "buildId")
        .ok_or_else(|| {
            AdoError::bad_request(
                "ArgumentNullException",
                "Value cannot be null. Parameter name: buildId",
            )
        })
        .and_then(|b| id_of(b, "build"))?;
    let base = base(&sim, &headers);
    let Some(b) = sim.org.build_by_id(p, build_id).filter(|b| b.completed) else {
        // ADO answers an empty summary for builds it holds no coverage for.
        return Ok(axum::response::IntoResponse::into_response((
            StatusCode::OK,
            Json(json!({"coverageData": [], "build": null, "deltaBuild": null})),
        )));
    };
    let hb = b.hash;
    let stat = |label: &str, pos: u64, total: u64| json!({"label": label, "position": pos, "total": total, "covered": total * (50 + hb % 50) / 100, "isDeltaAvailable": false, "delta": 0.0});
    Ok(axum::response::IntoResponse::into_response(Json(json!({
        "coverageData": [{
            "coverageStats": [stat("Lines", 4, 1000 + hb % 5000), stat("Branches", 6, 200 + hb % 800)],
            "buildPlatform": "Any CPU",
            "buildFlavor": "Release",
        }],
        "build": {"id": b.id.to_string(), "url": format!("{base}/_apis/build/Builds/{}", b.id)},
        "deltaBuild": null,
        "status": "finalized",
        "coverageDetailedSummaryStatus": "codeCoverageSuccess",
    }))))
}
