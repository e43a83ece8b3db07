//! Repository content: a small generated tree per repository and branch (the default branch and
//! `develop`), served by the items API (`path` for one item with optional content, `scopePath` +
//! `recursionLevel` for listings) and `itemsbatch`. Tests can write or delete files on a branch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::AdoError;
use super::org::{Org, Repo, h};
use super::routes::{base, find_repo, list_body, param, project};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_CONTENT: u64 = 0x56;
/// Every non-empty repository also has this branch, with one more service folder.
pub const EXTRA_BRANCH: &str = "develop";

/// Files written (`Some`) or deleted (`None`) by tests, per (repository id, branch, path).
#[derive(Default)]
pub(crate) struct ContentOverlay {
    files: Mutex<HashMap<(String, String, String), Option<String>>>,
}

impl AdoSim {
    /// Writes a file on a branch of a repository (no event; follow with [`AdoSim::push`]).
    pub fn write_file(&self, repo_id: &str, branch: &str, path: &str, content: &str) {
        self.content
            .set(repo_id, branch, path, Some(content.to_owned()));
    }

    /// Deletes a file from a branch of a repository.
    pub fn delete_file(&self, repo_id: &str, branch: &str, path: &str) {
        self.content.set(repo_id, branch, path, None);
    }

    /// The paths of the files on a branch (leading `/`), for tests' ground truth.
    pub fn file_paths(&self, repo_id: &str, branch: &str) -> Vec<String> {
        let Some(repo) = self.org.repo_by_id(repo_id) else {
            return Vec::new();
        };
        tree(&self.org, repo, branch, &self.content)
            .map(|t| t.into_keys().collect())
            .unwrap_or_default()
    }
}

impl ContentOverlay {
    fn set(&self, repo_id: &str, branch: &str, path: &str, content: Option<String>) {
        let key = (
            repo_id.to_ascii_lowercase(),
            branch.trim_start_matches("refs/heads/").to_owned(),
            format!("/{}", path.trim_start_matches('/')),
        );
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, content);
    }
}

/// A large JSON document just over 1 MiB, so clients meet the size cap.
fn big_json() -> String {
    let mut s = String::from("{\"samples\": [");
    let row = "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"";
    for i in 0..16_500 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(row);
    }
    s.push_str("]}");
    s
}

/// The files of a repository branch (path → content), or `None` when the branch does not exist.
fn tree(
    org: &Org,
    r: &Repo,
    branch: &str,
    overlay: &ContentOverlay,
) -> Option<BTreeMap<String, String>> {
    let default = r.default_branch?.trim_start_matches("refs/heads/");
    let branch = branch.trim_start_matches("refs/heads/");
    if !branch.eq_ignore_ascii_case(default) && !branch.eq_ignore_ascii_case(EXTRA_BRANCH) {
        return None;
    }
    let p = &org.projects[r.project];
    let name = &r.name;
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |path: &str, content: String| {
        files.insert(path.to_owned(), content);
    };
    put(
        "/README.md",
        format!("# {name}\n\nThe {name} repository of {}.\n", p.name),
    );
    if r.global.is_multiple_of(2) {
        put(
            "/CODEOWNERS",
            format!("* @{}-team\n", p.name.to_lowercase().replace(' ', "-")),
        );
    }
    put(
        "/package.json",
        format!(
            "{{\n  \"name\": \"{}\",\n  \"version\": \"1.{}.0\",\n  \"private\": true\n}}\n",
            name.to_lowercase().replace(' ', "-"),
            r.global % 10
        ),
    );
    put(
        "/catalog-info.yaml",
        format!(
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {}\nspec:\n  owner: {} Team\n  lifecycle: production\n",
            name.to_lowercase().replace(' ', "-"),
            p.name
        ),
    );
    put(
        "/config/app.yaml",
        format!("---\nservice: {name}\nreplicas: 2\n---\nservice: {name}-worker\nreplicas: 1\n"),
    );
    put(
        "/config/settings.json",
        "{\"logLevel\": \"info\", \"featureFlags\": {\"beta\": false}}\n".into(),
    );
    let mut services = vec!["api", "worker"];
    if branch.eq_ignore_ascii_case(EXTRA_BRANCH) {
        services.push("beta");
    }
    for s in services {
        put(&format!("/services/{s}/README.md"), format!("# {s}\n"));
        put(
            &format!("/services/{s}/port.yml"),
            format!(
                "identifier: {}-{s}\ntitle: {s}\n",
                name.to_lowercase().replace(' ', "-")
            ),
        );
    }
    put(
        "/docs/guide.md",
        "# Guide\n\nHow to work on this repository.\n".into(),
    );
    if r.global == 0 {
        put("/assets/big.json", big_json());
    }
    let ov = overlay.files.lock().unwrap_or_else(|e| e.into_inner());
    for ((repo, b, path), content) in ov.iter() {
        if repo.eq_ignore_ascii_case(&r.id) && b.eq_ignore_ascii_case(branch) {
            match content {
                Some(c) => {
                    files.insert(path.clone(), c.clone());
                }
                None => {
                    files.remove(path);
                }
            }
        }
    }
    Some(files)
}

/// Every folder of a tree (`/` included), from its file paths.
fn folders(files: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::from(["/".to_owned()]);
    for path in files.keys() {
        let mut dir = path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            out.insert(parent.to_owned());
            dir = parent;
        }
    }
    out
}

fn object_id(seed: u64, text: &str) -> String {
    let mut acc = seed;
    for b in text.bytes() {
        acc = h(acc, TAG_CONTENT, b as u64, acc >> 7);
    }
    format!(
        "{:016x}{:016x}{:08x}",
        acc,
        h(acc, 1, 2, 3),
        h(acc, 4, 5, 6) as u32
    )
}

struct Ctx<'a> {
    org: &'a Org,
    repo: &'a Repo,
    base: String,
    branch: String,
    commit: String,
    files: BTreeMap<String, String>,
    folders: BTreeSet<String>,
}

impl Ctx<'_> {
    fn item(&self, path: &str, content: bool, metadata: bool) -> Value {
        let p = &self.org.projects[self.repo.project];
        let url = format!(
            "{}/{}/_apis/git/repositories/{}/items?path={}&versionType=Branch&version={}",
            self.base, p.id, self.repo.id, path, self.branch
        );
        if let Some(text) = self.files.get(path) {
            let mut v = json!({
                "objectId": object_id(self.org.seed, text),
                "gitObjectType": "blob",
                "commitId": self.commit,
                "path": path,
                "url": url,
            });
            if metadata || content {
                let file_name = path.rsplit('/').next().unwrap_or_default();
                let extension = file_name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
                v["contentMetadata"] = json!({
                    "encoding": 65001,
                    "contentType": if extension == "json" { "application/json" } else { "text/plain" },
                    "fileName": file_name,
                    "extension": extension,
                });
            }
            if content {
                v["content"] = json!(text);
            }
            v
        } else {
            json!({
                "objectId": object_id(self.org.seed, path),
                "gitObjectType": "tree",
                "commitId": self.commit,
                "path": path,
                "isFolder": true,
                "url": url,
            })
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.folders.contains(path)
    }

    /// The item and, by recursion level, what is under it (the item itself first, as ADO lists).
    fn listing(&self, scope: &str, recursion: &str) -> Vec<String> {
        let mut out = vec![scope.to_owned()];
        if !self.folders.contains(scope) {
            return out;
        }
        let prefix = if scope == "/" {
            "/".to_owned()
        } else {
            format!("{scope}/")
        };
        let under = self
            .folders
            .iter()
            .chain(self.files.keys())
            .filter(|p| p.starts_with(&prefix) && p.as_str() != scope);
        match recursion {
            "full" => out.extend(under.cloned()),
            "onelevel" | "onelevelplusnestedemptyfolders" => {
                out.extend(under.filter(|p| !p[prefix.len()..].contains('/')).cloned())
            }
            _ => {}
        }
        out
    }
}

fn normalise(path: &str) -> String {
    let t = path.trim().trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else if t.starts_with('/') {
        t.to_owned()
    } else {
        format!("/{t}")
    }
}

fn item_not_found(path: &str, repo: &Repo, branch: &str) -> AdoError {
    AdoError::not_found(
        "GitItemNotFoundException",
        format!(
            "TF401174: The item '{path}' could not be found in the repository '{}' at the version specified by '<Branch: {branch} >' (resolved to commit '') or you do not have permission to access it.",
            repo.name
        ),
    )
}

fn ctx<'a>(
    sim: &'a AdoSim,
    headers: &HeaderMap,
    repo: &'a Repo,
    version: Option<&str>,
) -> Result<Ctx<'a>> {
    let default = repo.default_branch.unwrap_or("refs/heads/main");
    let branch = version
        .unwrap_or(default)
        .trim_start_matches("refs/heads/")
        .to_owned();
    let Some(files) = tree(&sim.org, repo, &branch, &sim.content) else {
        return Err(AdoError::not_found(
            "GitUnresolvableToCommitException",
            format!(
                "TF401175:The version descriptor <Branch: {branch} > could not be resolved to a version commit"
            ),
        ));
    };
    Ok(Ctx {
        org: &sim.org,
        repo,
        base: base(sim, headers),
        commit: object_id(sim.org.seed, &format!("{}@{branch}", repo.id)),
        branch,
        folders: folders(&files),
        files,
    })
}

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories/{{repositoryId}}/items"),
            get(items_project),
        )
        .route(
            &format!("{o}/_apis/git/repositories/{{repositoryId}}/items"),
            get(items_org),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories/{{repositoryId}}/itemsbatch"),
            post(items_batch),
        )
}

async fn items_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, rkey)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &pkey)?;
    let repo = find_repo(&sim, p, &rkey)?;
    items(&sim, &headers, repo, &q)
}

async fn items_org(
    State(sim): Sim,
    headers: HeaderMap,
    Path(rkey): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = sim
        .org
        .repo_by_id(&rkey)
        .map(|r| &sim.org.projects[r.project])
        .ok_or_else(|| AdoError::not_found("GitRepositoryNotFoundException", format!("TF401019: The Git repository with name or identifier {rkey} does not exist or you do not have permissions for the operation you are attempting.")))?;
    let repo = find_repo(&sim, p, &rkey)?;
    items(&sim, &headers, repo, &q)
}

fn flag(q: &[(String, String)], key: &str) -> bool {
    param(q, key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Items - Get answers a file with its bytes unless JSON is asked for: by `$format=json`, by an
/// `Accept` naming JSON, or by `includeContent` (which only means something in JSON). A client that
/// sends `Accept: */*` (curl, httpx: the Python peer reads files this way) gets the text.
fn wants_raw(headers: &HeaderMap, q: &[(String, String)]) -> bool {
    if let Some(format) = param(q, "$format") {
        return !format.eq_ignore_ascii_case("json");
    }
    !flag(q, "includeContent")
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|accept| !accept.to_ascii_lowercase().contains("json"))
}

fn items(
    sim: &AdoSim,
    headers: &HeaderMap,
    repo: &Repo,
    q: &[(String, String)],
) -> Result<Response> {
    let version = param(q, "versionDescriptor.version").or(param(q, "version"));
    let c = ctx(sim, headers, repo, version)?;
    let content = flag(q, "includeContent");
    let metadata = flag(q, "includeContentMetadata");
    let recursion = param(q, "recursionLevel").map(str::to_ascii_lowercase);
    if let Some(path) =
        param(q, "path").filter(|_| recursion.as_deref().is_none_or(|r| r == "none"))
    {
        // One item: the file (with its content when asked) or the folder.
        let path = normalise(path);
        if !c.exists(&path) {
            return Err(item_not_found(&path, repo, &c.branch));
        }
        if let Some(text) = c.files.get(&path).filter(|_| wants_raw(headers, q)) {
            return Ok((
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text.clone(),
            )
                .into_response());
        }
        return Ok(Json(c.item(&path, content, metadata)).into_response());
    }
    let scope = normalise(param(q, "scopePath").or(param(q, "path")).unwrap_or("/"));
    if !c.exists(&scope) {
        return Err(item_not_found(&scope, repo, &c.branch));
    }
    let value = c
        .listing(&scope, recursion.as_deref().unwrap_or("none"))
        .iter()
        .map(|p| c.item(p, false, metadata))
        .collect();
    Ok(Json(list_body(value)).into_response())
}

async fn items_batch(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, rkey)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let repo = find_repo(&sim, p, &rkey)?;
    let descriptors = body
        .get("itemDescriptors")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            AdoError::bad_request(
                "ArgumentNullException",
                "Value cannot be null. Parameter name: requestData.ItemDescriptors",
            )
        })?;
    let metadata = body
        .get("includeContentMetadata")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut groups = Vec::new();
    for d in descriptors {
        let version = d.get("version").and_then(Value::as_str);
        let c = ctx(&sim, &headers, repo, version)
            .map_err(|e| AdoError::bad_request("GitUnresolvableToCommitException", e.message))?;
        let path = normalise(d.get("path").and_then(Value::as_str).unwrap_or("/"));
        if !c.exists(&path) {
            // itemsbatch answers a missing path with 400, not 404.
            return Err(AdoError::bad_request(
                "GitItemNotFoundException",
                format!(
                    "TF401174: The item '{path}' could not be found in the repository '{}'.",
                    repo.name
                ),
            ));
        }
        let recursion = d
            .get("recursionLevel")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_ascii_lowercase();
        groups.push(Value::Array(
            c.listing(&path, &recursion)
                .iter()
                .map(|p| c.item(p, false, metadata))
                .collect(),
        ));
    }
    Ok(Json(json!({"count": groups.len(), "value": groups})))
}
