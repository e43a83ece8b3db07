//! Deterministic generation of the simulated organisation: projects, repositories, pull requests,
//! pipelines and work items, all derived from the spec's seed.
//!
//! Projects and repositories are small enough to build up front. Pull requests, pipelines and work
//! items are derived on demand from (seed, index), so a 100k-item organisation costs a few integers.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::OrgSpec;

/// SplitMix64: a fast, well-mixed hash; every generated value comes from it so the org is stable.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of the seed, a domain tag and two indices.
pub(crate) fn h(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed ^ tag.wrapping_mul(0x1000_0000_01B3)) ^ a) ^ b.wrapping_mul(31))
}

/// A version-4-shaped GUID derived from the seed, so ids are stable across runs.
pub(crate) fn guid(seed: u64, tag: u64, a: u64, b: u64) -> String {
    let hi = h(seed, tag, a, b);
    let lo = h(seed, tag ^ 0xFFFF, a, b);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

const TAG_PROJECT: u64 = 1;
const TAG_TEAM: u64 = 2;
const TAG_REPO: u64 = 3;
const TAG_PR: u64 = 4;
const TAG_PIPELINE: u64 = 5;
const TAG_WI: u64 = 6;
const TAG_USER: u64 = 7;
const TAG_COMMIT: u64 = 8;

/// ADO's usual timestamp rendering (UTC, millisecond precision, `Z`).
pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(crate) fn millis_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Percent-encodes one URL path segment (project and repo names may hold spaces).
pub(crate) fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const PROJECT_NAMES: &[&str] = &[
    "Platform",
    "Mobile App",
    "Legacy Tools",
    "Data Science",
    "Payments",
    "Identity",
    "Search",
    "Observability",
];
const REPO_NAMES: &[&str] = &[
    "api-gateway",
    "web-frontend",
    "billing-service",
    "auth-service",
    "infra",
    "docs",
    "notification-service",
    "search-indexer",
];
const AREAS: &[&str] = &["", "Frontend", "Backend", "Operations"];
const USERS: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@simorg.example"),
    ("Grace Hopper", "grace@simorg.example"),
    ("Alan Turing", "alan@simorg.example"),
    ("Barbara Liskov", "barbara@simorg.example"),
    ("Edsger Dijkstra", "edsger@simorg.example"),
    ("Margaret Hamilton", "margaret@simorg.example"),
    ("Ken Thompson", "ken@simorg.example"),
    ("Frances Allen", "frances@simorg.example"),
];
const TITLE_VERBS: &[&str] = &[
    "Fix",
    "Add",
    "Refactor",
    "Investigate",
    "Document",
    "Remove",
    "Speed up",
    "Migrate",
];
const TITLE_NOUNS: &[&str] = &[
    "login timeout",
    "checkout flow",
    "search ranking",
    "nightly export",
    "cache eviction",
    "audit log",
    "retry policy",
    "dashboard layout",
    "webhook handler",
    "billing report",
];

/// The process a project uses decides its work-item types and states, as in real ADO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Process {
    Agile,
    Basic,
}

impl Process {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Process::Agile => "Agile",
            Process::Basic => "Basic",
        }
    }
    fn template_id(self) -> &'static str {
        match self {
            Process::Agile => "adcc42ab-9882-485e-a3ed-7678f01f66bc",
            Process::Basic => "b8a3a935-7e91-48b8-a94c-606d37c3e9f2",
        }
    }
    fn types(self) -> &'static [&'static str] {
        match self {
            Process::Agile => &["Bug", "Task", "User Story", "Epic", "Task", "User Story"],
            Process::Basic => &["Issue", "Task", "Epic", "Issue"],
        }
    }
    fn states(self, work_item_type: &str) -> &'static [&'static str] {
        match (self, work_item_type) {
            (Process::Basic, _) => &["To Do", "Doing", "Done"],
            (Process::Agile, "Task") => &["New", "Active", "Closed", "Removed"],
            (Process::Agile, "User Story") => &["New", "Active", "Resolved", "Closed", "Removed"],
            (Process::Agile, _) => &["New", "Active", "Resolved", "Closed"],
        }
    }
}

pub(crate) fn reason(state: &str) -> &'static str {
    match state {
        "New" => "New",
        "Active" => "Implementation started",
        "Resolved" => "Code complete and unit tests pass",
        "Closed" => "Acceptance tests pass",
        "Removed" => "Removed from the backlog",
        "To Do" => "Added to backlog",
        "Doing" => "Started",
        _ => "Work finished",
    }
}

pub(crate) struct Project {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub revision: u64,
    pub last_update: DateTime<Utc>,
    pub team_id: String,
    pub process: Process,
    /// Work-item ids of this project are `wi_first ..= wi_first + wi_count - 1`: contiguous ranges make
    /// WIQL project and id filters a range walk instead of a scan.
    pub wi_first: u64,
    pub wi_count: u64,
    pub repos: Vec<Repo>,
    pub pipelines: usize,
    /// First pipeline id; pipeline ids are unique across the org.
    pub pipeline_first: u64,
}

impl Project {
    pub fn wi_range(&self) -> std::ops::RangeInclusive<u64> {
        self.wi_first..=self.wi_first + self.wi_count - 1
    }
}

pub(crate) struct Repo {
    pub project: usize,
    /// Index across the whole org; seeds PR ids.
    pub global: u64,
    pub id: String,
    pub name: String,
    pub default_branch: Option<&'static str>,
    pub size: u64,
    pub disabled: bool,
}

/// The immutable generated organisation. Mutations live in an overlay in [`super::AdoSim`].
pub(crate) struct Org {
    pub seed: u64,
    pub name: String,
    pub anchor: DateTime<Utc>,
    pub projects: Vec<Project>,
    pub prs_per_repo: usize,
    pub cicd: super::builds::CicdSpec,
    pub teams_per_project: usize,
    pub users: usize,
    pub wiki_pages: usize,
}

/// The facts of one work item that queries look at, derived from (seed, id) without allocation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WiCore {
    pub id: u64,
    pub project: usize,
    pub wtype: &'static str,
    pub state: &'static str,
    pub area: usize,
    pub created_ms: i64,
    pub changed_ms: i64,
    pub priority: u64,
    pub rev: u64,
    pub sprint: u64,
    hash: u64,
}

impl Org {
    pub fn generate(spec: &OrgSpec) -> Self {
        let seed = spec.seed;
        let anchor = spec.anchor.unwrap_or_else(default_anchor);
        let mut projects = Vec::with_capacity(spec.projects);
        let mut wi_next = 1u64;
        let mut repo_global = 0u64;
        let mut pipeline_next = 1u64;
        for p in 0..spec.projects {
            let pu = p as u64;
            let name = match PROJECT_NAMES.get(p) {
                Some(n) if p < PROJECT_NAMES.len() => n.to_string(),
                _ => format!("project-{p:04}"),
            };
            let id = guid(seed, TAG_PROJECT, pu, 0);
            let wi_count = spec
                .work_items_per_project
                .get(p)
                .or(spec.work_items_per_project.last())
                .copied()
                .unwrap_or(0) as u64;
            let mut repos = Vec::with_capacity(spec.repos_per_project);
            for j in 0..spec.repos_per_project {
                let ju = j as u64;
                // ADO creates a first repository named after the project.
                let rname = if j == 0 {
                    name.clone()
                } else {
                    match REPO_NAMES.get(j - 1) {
                        Some(n) => n.to_string(),
                        None => format!("repo-{j:03}"),
                    }
                };
                let last = j + 1 == spec.repos_per_project && j > 0;
                // Project 0's last repo is disabled and project 1's last repo is empty (no default
                // branch), plus a sprinkle across large orgs, so clients meet both cases.
                let disabled = (last && p == 0) || repo_global % 97 == 96;
                let empty = !disabled && ((last && p == 1) || repo_global % 89 == 88);
                let hr = h(seed, TAG_REPO, pu, ju);
                repos.push(Repo {
                    project: p,
                    global: repo_global,
                    id: guid(seed, TAG_REPO, pu, ju),
                    name: rname,
                    default_branch: if empty {
                        None
                    } else if hr.is_multiple_of(5) {
                        Some("refs/heads/master")
                    } else {
                        Some("refs/heads/main")
                    },
                    size: if empty { 0 } else { 1_000 + hr % 5_000_000 },
                    disabled,
                });
                repo_global += 1;
            }
            let hp = h(seed, TAG_PROJECT, pu, 1);
            projects.push(Project {
                team_id: guid(seed, TAG_TEAM, pu, 0),
                description: (!hp.is_multiple_of(3)).then(|| format!("The {name} project.")),
                tags: spec.project_tags.get(p).cloned().unwrap_or_default(),
                revision: 10 + hp % 400,
                last_update: anchor - Duration::minutes((hp % (60 * 24 * 200)) as i64),
                process: if p % 3 == 2 {
                    Process::Basic
                } else {
                    Process::Agile
                },
                wi_first: wi_next,
                wi_count,
                repos,
                pipelines: spec.pipelines_per_project,
                pipeline_first: pipeline_next,
                id,
                name,
            });
            wi_next += wi_count;
            pipeline_next += spec.pipelines_per_project as u64;
        }
        Org {
            seed,
            name: spec.name.clone(),
            anchor,
            projects,
            prs_per_repo: spec.prs_per_repo,
            cicd: spec.cicd.clone(),
            teams_per_project: spec.teams_per_project.max(1),
            users: spec.users.max(1),
            wiki_pages: spec.wiki_pages,
        }
    }
}

/// The start of the current UTC hour: recent enough that "last 7 days" filters see both sides, and
/// stable enough that two sims built in the same hour serve identical bodies.
fn default_anchor() -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    Utc.timestamp_opt(now - now.rem_euclid(3600), 0)
        .single()
        .unwrap_or_default()
}

/// A generated person; identities repeat across items as in a real org.
pub(crate) struct User {
    pub display_name: &'static str,
    pub unique_name: &'static str,
    pub id: String,
    pub descriptor: String,
}

impl Org {
    pub fn project_by_key(&self, key: &str) -> Option<&Project> {
        self.projects
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(key) || p.name.eq_ignore_ascii_case(key))
    }

    /// Finds a repository anywhere in the org by id (case-insensitive).
    pub fn repo_by_id(&self, id: &str) -> Option<&Repo> {
        self.projects
            .iter()
            .flat_map(|p| &p.repos)
            .find(|r| r.id.eq_ignore_ascii_case(id))
    }

    /// The repository and pull request an org-wide PR id belongs to (ids encode both).
    pub fn pull_request_by_id(&self, id: u64) -> Option<(&Repo, PullRequest)> {
        let n = self.prs_per_repo as u64;
        if id == 0 || n == 0 {
            return None;
        }
        let global = (id - 1) / n;
        let repo = self
            .projects
            .iter()
            .flat_map(|p| &p.repos)
            .find(|r| r.global == global)?;
        let pr = self
            .pull_requests(repo)
            .into_iter()
            .find(|pr| pr.id == id)?;
        Some((repo, pr))
    }

    pub fn project_of_work_item(&self, id: u64) -> Option<usize> {
        let i = self
            .projects
            .partition_point(|p| p.wi_first + p.wi_count <= id);
        let p = self.projects.get(i)?;
        (p.wi_count > 0 && id >= p.wi_first).then_some(i)
    }

    pub fn user(&self, n: u64) -> User {
        let i = (n % USERS.len() as u64) as usize;
        let (display_name, unique_name) = USERS[i];
        let id = guid(self.seed, TAG_USER, i as u64, 0);
        use base64::Engine;
        let descriptor = format!(
            "aad.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
        );
        User {
            display_name,
            unique_name,
            id,
            descriptor,
        }
    }

    pub fn identity_ref(&self, base: &str, n: u64) -> Value {
        let u = self.user(n);
        let avatar = format!("{base}/_apis/GraphProfile/MemberAvatars/{}", u.descriptor);
        json!({
            "displayName": u.display_name,
            "url": format!("{base}/_apis/Identities/{}", u.id),
            "_links": {"avatar": {"href": avatar}},
            "id": u.id,
            "uniqueName": u.unique_name,
            "imageUrl": avatar,
            "descriptor": u.descriptor,
        })
    }

    fn commit_id(&self, a: u64, b: u64) -> String {
        format!(
            "{:016x}{:016x}{:08x}",
            h(self.seed, TAG_COMMIT, a, b),
            h(self.seed, TAG_COMMIT, b, a),
            h(self.seed, TAG_COMMIT, a ^ b, 7) as u32
        )
    }

    // ---- projects ----

    /// The project reference as the list endpoint and nested `project` objects render it.
    pub fn project_json(&self, base: &str, p: &Project) -> Value {
        let mut v = json!({
            "id": p.id,
            "name": p.name,
            "url": format!("{base}/_apis/projects/{}", p.id),
            "state": "wellFormed",
            "revision": p.revision,
            "visibility": "private",
            "lastUpdateTime": fmt_time(p.last_update),
        });
        if let Some(d) = &p.description {
            v["description"] = json!(d);
        }
        v
    }

    pub fn project_detail_json(&self, base: &str, p: &Project, capabilities: bool) -> Value {
        let mut v = self.project_json(base, p);
        let collection_id = guid(self.seed, TAG_PROJECT, u64::MAX, 0);
        v["_links"] = json!({
            "self": {"href": format!("{base}/_apis/projects/{}", p.id)},
            "collection": {"href": format!("{base}/_apis/projectCollections/{collection_id}")},
            "web": {"href": format!("{base}/{}", enc(&p.name))},
        });
        v["defaultTeam"] = json!({
            "id": p.team_id,
            "name": format!("{} Team", p.name),
            "url": format!("{base}/_apis/projects/{}/teams/{}", p.id, p.team_id),
        });
        if capabilities {
            v["capabilities"] = json!({
                "versioncontrol": {"sourceControlType": "Git", "gitEnabled": "True", "tfvcEnabled": "False"},
                "processTemplate": {"templateName": p.process.name(), "templateTypeId": p.process.template_id()},
            });
        }
        v
    }

    /// All project properties; tags are stored by ADO as `Microsoft.TeamFoundation.Project.Tag.<tag>`.
    pub fn project_properties(&self, p: &Project) -> Vec<(String, String)> {
        let mut props = vec![
            (
                "System.CurrentProcessTemplateId".to_string(),
                p.process.template_id().to_string(),
            ),
            (
                "System.Process Template".to_string(),
                p.process.name().to_string(),
            ),
            (
                "System.SourceControlGitEnabled".to_string(),
                "True".to_string(),
            ),
        ];
        for t in &p.tags {
            props.push((
                format!("Microsoft.TeamFoundation.Project.Tag.{t}"),
                "True".to_string(),
            ));
        }
        props
    }

    // ---- repositories ----

    pub fn repo_json(&self, base: &str, r: &Repo) -> Value {
        let p = &self.projects[r.project];
        let (pn, rn) = (enc(&p.name), enc(&r.name));
        let mut v = json!({
            "id": r.id,
            "name": r.name,
            "url": format!("{base}/{}/_apis/git/repositories/{}", p.id, r.id),
            "project": self.project_json(base, p),
            "size": r.size,
            "remoteUrl": format!("{base}/{pn}/_git/{rn}"),
            "sshUrl": format!("git@ssh.dev.azure.com:v3/{}/{pn}/{rn}", enc(&self.name)),
            "webUrl": format!("{base}/{pn}/_git/{rn}"),
            "isDisabled": r.disabled,
            "isInMaintenance": false,
        });
        if let Some(b) = r.default_branch {
            v["defaultBranch"] = json!(b);
        }
        v
    }

    // ---- pull requests ----

    /// Every pull request of a repository, newest first (ADO's list order).
    pub fn pull_requests(&self, r: &Repo) -> Vec<PullRequest> {
        let n = self.prs_per_repo as u64;
        (0..n)
            .rev()
            .map(|k| {
                let hp = h(self.seed, TAG_PR, r.global, k);
                let status = match k {
                    0 => "active",
                    1 => "completed",
                    2 => "abandoned",
                    _ => match hp % 10 {
                        0..=2 => "active",
                        3..=7 => "completed",
                        _ => "abandoned",
                    },
                };
                const DAY: i64 = 24 * 60;
                // PR 1 closed within the last 5 days and PR 2 more than 8 days ago, so every repo
                // with three PRs has closed PRs on both sides of a 7-day window.
                let closed_ago_min = match k {
                    1 => 60 + (hp % (5 * DAY as u64)) as i64,
                    2 => 8 * DAY + (hp % (50 * DAY as u64)) as i64,
                    _ => 30 + (hp % (60 * DAY as u64)) as i64,
                };
                let (created, closed) = if status == "active" {
                    (
                        self.anchor - Duration::minutes((hp % (30 * DAY as u64)) as i64),
                        None,
                    )
                } else {
                    let closed = self.anchor - Duration::minutes(closed_ago_min);
                    let open_for = 60 + ((hp >> 20) % (10 * DAY as u64)) as i64;
                    (closed - Duration::minutes(open_for), Some(closed))
                };
                PullRequest {
                    id: r.global * n + k + 1,
                    k,
                    status,
                    created,
                    closed,
                    hash: hp,
                }
            })
            .collect()
    }

    pub fn pull_request_json(&self, base: &str, r: &Repo, pr: &PullRequest) -> Value {
        let p = &self.projects[r.project];
        let hp = pr.hash;
        let verb = TITLE_VERBS[(hp % TITLE_VERBS.len() as u64) as usize];
        let noun = TITLE_NOUNS[((hp >> 8) % TITLE_NOUNS.len() as u64) as usize];
        let slug = noun.replace(' ', "-");
        let target = r.default_branch.unwrap_or("refs/heads/main");
        let reviewers: Vec<Value> = (0..(hp >> 12) % 3)
            .map(|i| {
                let mut rv = self.identity_ref(base, (hp >> 16) + i + 1);
                let vote = match pr.status {
                    "completed" => 10,
                    "abandoned" => 0,
                    _ => [0, 5, 10, -5][((hp >> 24) + i) as usize % 4],
                };
                let rid = rv["id"].as_str().unwrap_or_default().to_string();
                rv["reviewerUrl"] = json!(format!(
                    "{base}/{}/_apis/git/repositories/{}/pullRequests/{}/reviewers/{rid}",
                    p.id, r.id, pr.id
                ));
                rv["vote"] = json!(vote);
                rv["hasDeclined"] = json!(false);
                rv["isFlagged"] = json!(false);
                rv
            })
            .collect();
        let repo_url = format!("{base}/{}/_apis/git/repositories/{}", p.id, r.id);
        let commit = |tag: u64| {
            let c = self.commit_id(pr.id, tag);
            json!({"commitId": c, "url": format!("{repo_url}/commits/{c}")})
        };
        let mut v = json!({
            "repository": {
                "id": r.id,
                "name": r.name,
                "url": repo_url,
                "project": {
                    "id": p.id,
                    "name": p.name,
                    "state": "wellFormed",
                    "visibility": "private",
                    "lastUpdateTime": fmt_time(p.last_update),
                },
            },
            "pullRequestId": pr.id,
            "codeReviewId": pr.id,
            "status": pr.status,
            "createdBy": self.identity_ref(base, hp >> 4),
            "creationDate": fmt_time(pr.created),
            "title": format!("{verb} {noun}"),
            "description": format!("{verb} {noun} in {}.", r.name),
            "sourceRefName": format!("refs/heads/feature/{slug}-{}", pr.k),
            "targetRefName": target,
            "mergeStatus": match pr.status {
                "abandoned" => "notSet",
                _ if hp.is_multiple_of(9) => "conflicts",
                _ => "succeeded",
            },
            "isDraft": pr.status == "active" && hp.is_multiple_of(7),
            "mergeId": guid(self.seed, TAG_PR, pr.id, 1),
            "lastMergeSourceCommit": commit(1),
            "lastMergeTargetCommit": commit(2),
            "reviewers": reviewers,
            "url": format!("{repo_url}/pullRequests/{}", pr.id),
            "supportsIterations": true,
        });
        if let Some(c) = pr.closed {
            v["closedDate"] = json!(fmt_time(c));
        }
        if pr.status == "completed" {
            v["lastMergeCommit"] = commit(3);
        }
        v
    }

    // ---- pipelines ----

    pub fn pipeline_json(&self, base: &str, p: &Project, k: usize) -> Value {
        let id = p.pipeline_first + k as u64;
        let hp = h(self.seed, TAG_PIPELINE, id, 0);
        let revision = 1 + hp % 20;
        let name = match p.repos.get(k % p.repos.len().max(1)) {
            Some(r) if k < p.repos.len() => format!("{}-ci", r.name),
            _ => format!("{}-pipeline-{k}", p.name.to_lowercase().replace(' ', "-")),
        };
        let href = format!("{base}/{}/_apis/pipelines/{id}?revision={revision}", p.id);
        json!({
            "_links": {
                "self": {"href": href},
                "web": {"href": format!("{base}/{}/_build/definition?definitionId={id}", p.id)},
            },
            "url": href,
            "id": id,
            "revision": revision,
            "name": name,
            "folder": if k.is_multiple_of(2) { "\\" } else { "\\services" },
        })
    }

    // ---- work items ----

    pub fn work_item_core(&self, id: u64) -> Option<WiCore> {
        let pi = self.project_of_work_item(id)?;
        let p = &self.projects[pi];
        let hw = h(self.seed, TAG_WI, id, 0);
        let types = p.process.types();
        let wtype = types[(hw % types.len() as u64) as usize];
        let states = p.process.states(wtype);
        let state = states[((hw >> 8) % states.len() as u64) as usize];
        const DAY_MIN: u64 = 24 * 60;
        let anchor = self.anchor.timestamp_millis();
        let changed_ms = anchor - ((hw >> 24) % (120 * DAY_MIN)) as i64 * 60_000;
        let created_ms = changed_ms - ((hw >> 40) % (300 * DAY_MIN)) as i64 * 60_000;
        Some(WiCore {
            id,
            project: pi,
            wtype,
            state,
            area: ((hw >> 16) % AREAS.len() as u64) as usize,
            created_ms,
            changed_ms,
            priority: 1 + (hw >> 50) % 4,
            rev: 1 + (hw >> 56) % 8,
            sprint: 1 + (hw >> 20) % 12,
            hash: hw,
        })
    }

    pub fn area_path(&self, c: &WiCore) -> String {
        let p = &self.projects[c.project].name;
        match AREAS[c.area] {
            "" => p.clone(),
            a => format!("{p}\\{a}"),
        }
    }

    pub fn title(&self, c: &WiCore) -> String {
        let verb = TITLE_VERBS[((c.hash >> 4) % TITLE_VERBS.len() as u64) as usize];
        let noun = TITLE_NOUNS[((c.hash >> 12) % TITLE_NOUNS.len() as u64) as usize];
        format!("{verb} {noun}")
    }

    pub fn iteration_path(&self, c: &WiCore) -> String {
        format!("{}\\Sprint {}", self.projects[c.project].name, c.sprint)
    }

    /// The generated fields of a work item, before any overlay.
    pub fn work_item_fields(&self, base: &str, c: &WiCore) -> Map<String, Value> {
        let p = &self.projects[c.project];
        let mut f = Map::new();
        let mut put = |k: &str, v: Value| {
            f.insert(k.to_string(), v);
        };
        put("System.AreaPath", json!(self.area_path(c)));
        put("System.TeamProject", json!(p.name));
        put("System.IterationPath", json!(self.iteration_path(c)));
        put("System.WorkItemType", json!(c.wtype));
        put("System.State", json!(c.state));
        put("System.Reason", json!(reason(c.state)));
        put(
            "System.CreatedDate",
            json!(fmt_time(millis_to_time(c.created_ms))),
        );
        put("System.CreatedBy", self.identity_ref(base, c.hash >> 7));
        put(
            "System.ChangedDate",
            json!(fmt_time(millis_to_time(c.changed_ms))),
        );
        put("System.ChangedBy", self.identity_ref(base, c.hash >> 9));
        put("System.CommentCount", json!((c.hash >> 33) % 5));
        put("System.Title", json!(self.title(c)));
        put("System.BoardColumn", json!(c.state));
        put("Microsoft.VSTS.Common.Priority", json!(c.priority));
        if matches!(c.wtype, "User Story" | "Issue") && (c.hash >> 36).is_multiple_of(2) {
            put(
                "Microsoft.VSTS.Scheduling.Effort",
                json!(1 + (c.hash >> 37) % 13),
            );
        }
        if (c.hash >> 44).is_multiple_of(3) {
            put(
                "System.Description",
                json!(format!(
                    "<div>{} for the {} team.</div>",
                    self.title(c),
                    p.name
                )),
            );
        }
        if c.state != "New" && c.state != "To Do" {
            put("System.AssignedTo", self.identity_ref(base, c.hash >> 11));
        }
        f
    }

    /// The parent link: Tasks and Issues point at an earlier item of the same project.
    pub fn work_item_parent(&self, c: &WiCore) -> Option<u64> {
        let p = &self.projects[c.project];
        let offset = c.id - p.wi_first;
        (matches!(c.wtype, "Task" | "Issue" | "Bug") && offset > 0)
            .then(|| p.wi_first + (c.hash >> 45) % offset)
    }

    pub fn work_item_links(&self, base: &str, c: &WiCore) -> Value {
        let p = &self.projects[c.project];
        let url = format!("{base}/_apis/wit/workItems/{}", c.id);
        json!({
            "self": {"href": url},
            "workItemUpdates": {"href": format!("{url}/updates")},
            "workItemRevisions": {"href": format!("{url}/revisions")},
            "workItemComments": {"href": format!("{url}/comments")},
            "html": {"href": format!("{base}/{}/_workitems/edit/{}", p.id, c.id)},
            "workItemType": {"href": format!("{base}/{}/_apis/wit/workItemTypes/{}", p.id, enc(c.wtype))},
            "fields": {"href": format!("{base}/{}/_apis/wit/fields", p.id)},
        })
    }

    pub fn work_item_relations(&self, base: &str, c: &WiCore) -> Vec<Value> {
        self.work_item_parent(c)
            .map(|parent| {
                json!({
                    "rel": "System.LinkTypes.Hierarchy-Reverse",
                    "url": format!("{base}/_apis/wit/workItems/{parent}"),
                    "attributes": {"isLocked": false, "name": "Parent"},
                })
            })
            .into_iter()
            .collect()
    }
}

pub(crate) struct PullRequest {
    pub id: u64,
    k: u64,
    pub status: &'static str,
    pub created: DateTime<Utc>,
    pub closed: Option<DateTime<Utc>>,
    hash: u64,
}
