//! Repository content kinds: `file` (paths and globs per repository, read from the default branch,
//! content parsed as JSON or YAML, files over 1 MiB skipped), `folder` (folder patterns per repository
//! and branch, listed on that branch) and the `includedFiles` enrichment shared by `repository`,
//! `file` and `folder` (`__includedFiles`: requested path → text, `""` when missing).

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};

use super::glob::{Glob, is_glob};
use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::parent::{repository_request, unless_parent_gone};
use super::{
    Block, FetchContext, Kind, OptionError, PageSink, REPO_CONCURRENCY, SelectorOptions, str_field,
};
use crate::ado::{AdoClient, AdoError, Request};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

pub struct File;
pub struct Folder;

/// Azure DevOps has no event for repository content: a push to a branch that a `file` block (the
/// default branch) or a `folder` block (its configured branch) reads re-lists that kind for the pushed
/// repository only, and upserts what is there now. Pushes to other branches cost nothing; a deleted
/// branch's entities go with the next resync.
static CONTENT_EVENTS: [&LiveEvent; 1] = [&super::repository::PUSH];

/// A ref update's new object id when the branch was deleted.
const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The pushed repository and the branches that still exist after the push. `None`: not a push, no
/// branch left, the repository is gone or its project excluded.
async fn pushed<'m>(
    cx: &LiveContext<'_>,
    message: &'m ChangeMessage,
) -> Result<Option<(Value, Vec<&'m str>)>, LiveError> {
    let Change::Push {
        repository_id,
        ref_updates,
    } = &message.change
    else {
        return Ok(None);
    };
    let branches: Vec<&str> = ref_updates
        .iter()
        .filter(|u| u.new_object_id != ZERO_SHA)
        .filter_map(|u| u.name.strip_prefix("refs/heads/"))
        .collect();
    if branches.is_empty() {
        return Ok(None);
    }
    let Some(repo) = super::repository::read_one(cx, message.project_id.as_ref(), repository_id)
        .await
        .map_err(LiveError::ado(format_args!("repository {repository_id}")))?
    else {
        return Ok(None);
    };
    let project = live::answered_guid(&repo, "/project/id");
    if cx.excluded(project.as_ref()).await? {
        return Ok(None);
    }
    Ok(Some((repo, branches)))
}

/// The peer's cap: larger files are skipped (a catalog property is no place for them).
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;
/// File contents read at once within one repository.
const FILES_AT_ONCE: usize = 8;

// ------------------------------------------------------------------ shared helpers

/// The branch name of a repository's default branch (`refs/heads/` removed); `None` for an empty repo.
pub(crate) fn default_branch(repo: &Value) -> Option<String> {
    repo.get("defaultBranch")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .map(|b| b.trim_start_matches("refs/heads/").to_owned())
}

fn project_id(repo: &Value) -> &str {
    repo.pointer("/project/id")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn items_path(repo: &Value) -> String {
    format!(
        "/{}/_apis/git/repositories/{}/items",
        project_id(repo),
        str_field(repo, "id")
    )
}

/// Whether Azure DevOps answered that the path (TF401174, `GitItemNotFoundException`) or the branch
/// (TF401175, `GitUnresolvableToCommitException`) does not exist in the repository: a definite answer
/// from the repository itself, unlike a bare 404 (an unknown route, a proxy), which proves nothing.
/// The single-item GET answers these with 404, `itemsbatch` with 400.
fn path_or_branch_missing(e: &AdoError) -> bool {
    match e {
        AdoError::NotFound(m) | AdoError::Invalid(m) => {
            m.mentions("TF401174") || m.mentions("TF401175")
        }
        _ => false,
    }
}

/// What a failed read of a path means: `Ok(())` when the path or branch is not there, or the
/// repository itself is gone; otherwise the error, for the kind to fail with.
async fn nothing_at_path(client: &AdoClient, e: AdoError, repo: &Value) -> Result<(), AdoError> {
    if path_or_branch_missing(&e) {
        return Ok(());
    }
    unless_parent_gone(client, e, &repository_request(repo)).await
}

/// One file on a branch, with its content; `None` when the path (or the branch, or the repository)
/// does not exist.
pub(crate) async fn read_file(
    client: &AdoClient,
    repo: &Value,
    branch: &str,
    path: &str,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(items_path(repo))
        .query("path", format!("/{}", path.trim_start_matches('/')))
        .query("versionDescriptor.version", branch)
        .query("versionDescriptor.versionType", "branch")
        .query("includeContent", "true")
        .query("includeContentMetadata", "true");
    match client.send(&req).await {
        Ok(reply) => Ok(Some(reply.body)),
        Err(e) => nothing_at_path(client, e, repo).await.map(|()| None),
    }
}

/// `path` under `base`: a leading `/` is dropped, a base of `.` is the root, and a path already under
/// the base is kept as it is.
pub(crate) fn resolve(base: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    let base = base.trim_matches('/');
    if base.is_empty() || base == "." || path.starts_with(&format!("{base}/")) {
        path.to_owned()
    } else {
        format!("{base}/{path}")
    }
}

/// `__includedFiles` for one item: each requested path, resolved under `base`, read from `branch`.
/// These are content of the item, not a listing, and optional by design: a README that a repository
/// does not have is `""` (the peer's shape), which deletes nothing. Only a definite answer gives `""`
/// (the path or branch is not there, or the repository is gone); any other failing read fails the
/// kind rather than writing `""` over real content.
pub(crate) async fn included_files(
    client: &AdoClient,
    repo: &Value,
    branch: Option<&str>,
    base: &str,
    paths: &[String],
) -> Result<Value, AdoError> {
    // The paths of one item are read at once: with a repository's README and CODEOWNERS read one
    // after the other, the repository kind was the last to finish a pass.
    let texts = futures::future::try_join_all(paths.iter().map(|path| async move {
        Ok::<_, AdoError>(match branch {
            Some(b) if !repo_unreadable(repo) => read_file(client, repo, b, &resolve(base, path))
                .await?
                .and_then(|f| f.get("content").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default(),
            _ => String::new(),
        })
    }))
    .await?;
    let out: Map<String, Value> = paths
        .iter()
        .cloned()
        .zip(texts.into_iter().map(Value::String))
        .collect();
    Ok(Value::Object(out))
}

/// A disabled repository refuses every git read; asking would only produce errors.
fn repo_unreadable(repo: &Value) -> bool {
    repo.get("isDisabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `includedFiles`, which `repository`, `file` and `folder` take alike.
pub(crate) fn included_option(selector: &Selector) -> Result<Vec<String>, OptionError> {
    Ok(selector.str_list_option("includedFiles")?)
}

/// Adds `__includedFiles` to repositories (root of the default branch).
pub(crate) async fn enrich_repositories(
    client: &AdoClient,
    repos: &mut [Value],
    paths: &[String],
) -> Result<(), AdoError> {
    if paths.is_empty() {
        return Ok(());
    }
    let files: Vec<Value> = futures::stream::iter(repos.iter().cloned())
        .map(|repo| async move {
            included_files(client, &repo, default_branch(&repo).as_deref(), "", paths).await
        })
        .buffered(REPO_CONCURRENCY)
        .try_collect()
        .await?;
    for (repo, f) in repos.iter_mut().zip(files) {
        repo["__includedFiles"] = f;
    }
    Ok(())
}

/// JSON first, then YAML (a document starting with `---` may hold several: a list when more than one
/// is non-null), else the raw text, as the peer parses.
pub(crate) fn parse_content(raw: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(raw) {
        return v;
    }
    if raw.trim_start().starts_with("---") {
        let Ok(mut docs) = serde_saphyr::from_multiple::<Value>(raw) else {
            return Value::String(raw.to_owned());
        };
        docs.retain(|doc| !doc.is_null());
        return match docs.len() {
            0 => Value::String(raw.to_owned()),
            1 => docs.pop().unwrap_or_default(),
            _ => Value::Array(docs),
        };
    }
    match serde_saphyr::from_str::<Value>(raw) {
        Ok(Value::Null) | Err(_) => Value::String(raw.to_owned()),
        Ok(v) => v,
    }
}

/// Where a listing for `glob` must start and how deep it must go: the static segments before the first
/// glob segment (never the whole path, so a literal last segment is found by listing its parent).
fn listing_scope(glob: &str) -> (String, &'static str) {
    let segments: Vec<&str> = glob
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let fixed = segments
        .iter()
        .take_while(|s| !is_glob(s))
        .count()
        .min(segments.len().saturating_sub(1));
    let rest = &segments[fixed..];
    let recursion = if rest.len() > 1 || glob.contains("**") {
        "full"
    } else {
        "oneLevel"
    };
    (segments[..fixed].join("/"), recursion)
}

// ------------------------------------------------------------------ file

/// `files` {path: paths and globs, repos: names} and `includedFiles`.
pub struct FileOptions {
    literal: Vec<String>,
    globs: Vec<Glob>,
    repos: Vec<String>,
    pub(crate) included: Vec<String>,
}

impl SelectorOptions for FileOptions {
    const NAMES: &'static [&'static str] = &["files", "includedFiles"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let included = included_option(selector)?;
        Self::read(selector, included)
    }
}

impl FileOptions {
    fn read(selector: &Selector, included: Vec<String>) -> Result<Self, OptionError> {
        let refuse = |message: String| OptionError::new("files", message);
        let files = selector.options.get("files").ok_or_else(|| {
            refuse("files is required: {path: <path or glob, or a list>, repos: [names]}".into())
        })?;
        let list = |key: &str| -> Result<Vec<String>, OptionError> {
            match files.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(vec![s.clone()]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            refuse(format!("files.{key} must hold strings, got {v}"))
                        })
                    })
                    .collect(),
                Some(v) => Err(refuse(format!(
                    "files.{key} must be a string or a list, got {v}"
                ))),
            }
        };
        let paths = list("path")?;
        if paths.is_empty() {
            return Err(refuse(
                "files.path must name at least one path or glob".into(),
            ));
        }
        let (globs, literal): (Vec<String>, Vec<String>) =
            paths.into_iter().partition(|p| is_glob(p));
        Ok(Self {
            literal: literal
                .into_iter()
                .map(|p| p.trim_start_matches('/').to_owned())
                .collect(),
            globs: globs
                .iter()
                .map(|g| Glob::new(g).map_err(refuse))
                .collect::<Result<_, _>>()?,
            repos: list("repos")?,
            included,
        })
    }

    /// Whether the `repos` filter lets this repository through.
    pub(crate) fn wants_repo(&self, repo: &Value) -> bool {
        self.repos.is_empty() || self.repos.iter().any(|r| r == str_field(repo, "name"))
    }

    fn wants_path(&self, path: &str) -> bool {
        let p = path.trim_start_matches('/');
        self.literal.iter().any(|l| l.eq_ignore_ascii_case(p))
            || self.globs.iter().any(|g| g.matches(p))
    }
}

#[async_trait]
impl Kind for File {
    type Options = FileOptions;

    fn name(&self) -> &'static str {
        "file"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &FileOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let repos = ctx.repositories().await?;
        futures::stream::iter(
            repos
                .iter()
                .filter(|r| opts.wants_repo(r) && !repo_unreadable(r))
                .map(Ok),
        )
        .try_for_each_concurrent(REPO_CONCURRENCY, |repo| async move {
            let files = repo_files(&ctx.client, repo, opts).await?;
            sink.send(files).await
        })
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &CONTENT_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, FileOptions>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some((repo, branches)) = pushed(cx, message).await? else {
            return Ok(None);
        };
        let on_default = default_branch(&repo).is_some_and(|d| branches.contains(&d.as_str()));
        if !on_default {
            return Ok(None);
        }
        let mut items: Option<Changed<'b>> = None;
        for block in blocks {
            let opts = block.options;
            if !opts.wants_repo(&repo) {
                continue;
            }
            let found = repo_files(cx.ado, &repo, opts)
                .await
                .map_err(LiveError::ado(format_args!(
                    "repository {}",
                    str_field(&repo, "id")
                )))?;
            items.get_or_insert_with(Vec::new).extend(
                found
                    .into_iter()
                    .map(|f| (block.resource, RawItem::Current(f))),
            );
        }
        Ok(items)
    }
}

/// The file items of one repository's default branch. Shared with live updates after a push.
pub(crate) async fn repo_files(
    client: &AdoClient,
    repo: &Value,
    opts: &FileOptions,
) -> Result<Vec<Value>, AdoError> {
    let Some(branch) = default_branch(repo) else {
        return Ok(Vec::new());
    };
    let mut descriptors: Vec<Value> = opts
        .literal
        .iter()
        .map(|p| json!({"path": format!("/{p}"), "recursionLevel": "none"}))
        .collect();
    // One listing per base path, as deep as the deepest pattern under it needs.
    let mut scopes: BTreeMap<String, &'static str> = BTreeMap::new();
    for g in &opts.globs {
        let (base, recursion) = listing_scope(g.as_str());
        let e = scopes.entry(base).or_insert(recursion);
        if recursion == "full" {
            *e = "full";
        }
    }
    descriptors.extend(
        scopes
            .into_iter()
            .map(|(base, r)| json!({"path": format!("/{base}"), "recursionLevel": r})),
    );
    let mut found: BTreeMap<String, Value> = BTreeMap::new();
    for mut d in descriptors {
        d["version"] = json!(branch);
        d["versionType"] = json!("branch");
        let req = Request::post(
            format!(
                "/{}/_apis/git/repositories/{}/itemsbatch",
                project_id(repo),
                str_field(repo, "id")
            ),
            json!({"itemDescriptors": [d], "includeContentMetadata": true}),
        );
        let groups = match client.send(&req).await {
            Ok(r) => crate::ado::paging::take_items(r.body, "value"),
            Err(e) => {
                nothing_at_path(client, e, repo).await?;
                continue;
            }
        };
        for item in groups.into_iter().flat_map(|g| match g {
            Value::Array(items) => items,
            other => vec![other],
        }) {
            let path = str_field(&item, "path").to_owned();
            let blob = str_field(&item, "gitObjectType") == "blob"
                && !item
                    .get("isFolder")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            if blob && opts.wants_path(&path) {
                found.insert(path, item);
            }
        }
    }
    let files: Vec<Option<Value>> = futures::stream::iter(found.into_values())
        .map(|item| {
            let branch = &branch;
            async move { file_item(client, repo, branch, item, &opts.included).await }
        })
        .buffered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    Ok(files.into_iter().flatten().collect())
}

/// `{file: {path, objectId, size, isFolder, commitId, …contentMetadata, content: {raw, parsed}}, repo}`;
/// `None` for an empty file, one over [`MAX_FILE_BYTES`], or one gone since the listing.
pub(crate) async fn file_item(
    client: &AdoClient,
    repo: &Value,
    branch: &str,
    item: Value,
    included: &[String],
) -> Result<Option<Value>, AdoError> {
    let path = str_field(&item, "path").trim_start_matches('/').to_owned();
    let Some(read) = read_file(client, repo, branch, &path).await? else {
        return Ok(None);
    };
    let raw = read
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_FILE_BYTES {
        tracing::info!(repository = %str_field(repo, "name"), path = %path, bytes = raw.len(), "file skipped: larger than 1 MiB");
        return Ok(None);
    }
    let mut file = Map::new();
    file.insert("path".into(), json!(path));
    file.insert(
        "objectId".into(),
        read.get("objectId")
            .cloned()
            .unwrap_or(item["objectId"].clone()),
    );
    file.insert("size".into(), json!(raw.len()));
    file.insert("isFolder".into(), json!(false));
    file.insert(
        "commitId".into(),
        read.get("commitId").cloned().unwrap_or(Value::Null),
    );
    if let Some(Value::Object(meta)) = read.get("contentMetadata").or(item.get("contentMetadata")) {
        for (k, v) in meta {
            file.entry(k.clone()).or_insert(v.clone());
        }
    }
    file.insert(
        "content".into(),
        json!({"raw": raw, "parsed": parse_content(raw)}),
    );
    let mut out = json!({"file": file, "repo": repo});
    if !included.is_empty() {
        // Relative to the file's own directory, as the peer designed it (its implementation read a
        // field real items lack and fell back to the repository root).
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        out["__includedFiles"] = included_files(client, repo, Some(branch), dir, included).await?;
    }
    Ok(Some(out))
}

// ------------------------------------------------------------------ folder

pub(crate) struct FolderPattern {
    pub(crate) glob: Glob,
    /// `(name, branch)`; empty means every repository no other pattern names.
    pub(crate) repos: Vec<(String, Option<String>)>,
}

/// `project_name`, `folders` [{path: glob, repos: [name or {name, branch}]}] and `includedFiles`.
pub struct FolderOptions {
    project: Option<String>,
    pub(crate) patterns: Vec<FolderPattern>,
    pub(crate) included: Vec<String>,
}

impl SelectorOptions for FolderOptions {
    const NAMES: &'static [&'static str] = &["project_name", "folders", "includedFiles"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let project = selector.str_option("project_name")?;
        let included = included_option(selector)?;
        Self::read(selector, project, included)
    }
}

impl FolderOptions {
    fn read(
        selector: &Selector,
        project: Option<String>,
        included: Vec<String>,
    ) -> Result<Self, OptionError> {
        let refuse = |message: String| OptionError::new("folders", message);
        let folders = match selector.options.get("folders") {
            Some(Value::Array(f)) if !f.is_empty() => f,
            _ => {
                return Err(refuse(
                    "folders must list at least one {path, repos} entry".into(),
                ));
            }
        };
        let mut patterns = Vec::new();
        for f in folders {
            let path = f
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse(format!("folders: each entry needs a path, got {f}")))?;
            let mut repos = Vec::new();
            for r in f
                .get("repos")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (name, branch) = match r {
                    Value::String(s) => (s.clone(), None),
                    Value::Object(o) => (
                        o.get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                refuse(format!("folders.repos: each repo needs a name, got {r}"))
                            })?
                            .to_owned(),
                        o.get("branch")
                            .and_then(Value::as_str)
                            .map(|b| b.trim_start_matches("refs/heads/").to_owned()),
                    ),
                    other => return Err(refuse(format!("folders.repos: unexpected {other}"))),
                };
                repos.push((name, branch));
            }
            patterns.push(FolderPattern {
                glob: Glob::new(path.trim_matches('/')).map_err(refuse)?,
                repos,
            });
        }
        Ok(Self {
            project,
            patterns,
            included,
        })
    }

    /// The (pattern, branch) pairs that apply to a repository: patterns naming it, or, if none names
    /// it, the patterns naming no repository.
    pub(crate) fn for_repo(&self, repo: &Value) -> Vec<(&FolderPattern, Option<String>)> {
        let name = str_field(repo, "name");
        let named: Vec<_> = self
            .patterns
            .iter()
            .flat_map(|p| {
                p.repos
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(move |(_, b)| (p, b.clone().or_else(|| default_branch(repo))))
            })
            .collect();
        let anywhere_named = self
            .patterns
            .iter()
            .any(|p| p.repos.iter().any(|(n, _)| n == name));
        if anywhere_named {
            return named;
        }
        self.patterns
            .iter()
            .filter(|p| p.repos.is_empty())
            .map(|p| (p, default_branch(repo)))
            .collect()
    }
}

#[async_trait]
impl Kind for Folder {
    type Options = FolderOptions;

    fn name(&self) -> &'static str {
        "folder"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &FolderOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let repos = ctx.repositories().await?;
        let in_project = |r: &&Value| match &opts.project {
            None => true,
            Some(p) => {
                let project = r.get("project").cloned().unwrap_or_default();
                str_field(&project, "name").eq_ignore_ascii_case(p)
                    || str_field(&project, "id").eq_ignore_ascii_case(p)
            }
        };
        futures::stream::iter(
            repos
                .iter()
                .filter(in_project)
                .filter(|r| !repo_unreadable(r))
                .map(Ok),
        )
        .try_for_each_concurrent(REPO_CONCURRENCY, |repo| async move {
            for (pattern, branch) in opts.for_repo(repo) {
                let Some(branch) = branch else { continue };
                let items =
                    repo_folders(&ctx.client, repo, &branch, pattern, &opts.included).await?;
                sink.send(items).await?;
            }
            Ok(())
        })
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &CONTENT_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, FolderOptions>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some((repo, branches)) = pushed(cx, message).await? else {
            return Ok(None);
        };
        let mut items: Option<Changed<'b>> = None;
        for block in blocks {
            let opts = block.options;
            for (pattern, branch) in opts.for_repo(&repo) {
                let Some(branch) = branch.filter(|b| branches.contains(&b.as_str())) else {
                    continue;
                };
                let found = repo_folders(cx.ado, &repo, &branch, pattern, &opts.included)
                    .await
                    .map_err(LiveError::ado(format_args!(
                        "repository {}",
                        str_field(&repo, "id")
                    )))?;
                items.get_or_insert_with(Vec::new).extend(
                    found
                        .into_iter()
                        .map(|f| (block.resource, RawItem::Current(f))),
                );
            }
        }
        Ok(items)
    }
}

/// The folders of one repository branch matching one pattern, listed on that branch (the peer listed
/// the default branch whatever the configuration said). Shared with live updates after a push.
pub(crate) async fn repo_folders(
    client: &AdoClient,
    repo: &Value,
    branch: &str,
    pattern: &FolderPattern,
    included: &[String],
) -> Result<Vec<Value>, AdoError> {
    let (base, recursion) = listing_scope(pattern.glob.as_str());
    let req = Request::get(items_path(repo))
        .query("scopePath", format!("/{base}"))
        .query("recursionLevel", recursion)
        .query("versionDescriptor.version", branch)
        .query("versionDescriptor.versionType", "branch");
    let listed = match client.send(&req).await {
        Ok(r) => crate::ado::paging::take_items(r.body, "value"),
        Err(e) => {
            nothing_at_path(client, e, repo).await?;
            return Ok(Vec::new());
        }
    };
    let mut out = Vec::new();
    for mut item in listed {
        let path = str_field(&item, "path").trim_matches('/').to_owned();
        let folder = item
            .get("isFolder")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || str_field(&item, "gitObjectType") == "tree";
        if !folder || path == base || !pattern.glob.matches(&path) {
            continue;
        }
        item["__repository"] = repo.clone();
        item["__branch"] = json!(branch);
        item["__pattern"] = json!(pattern.glob.as_str());
        if !included.is_empty() {
            // The repository root on the folder's branch, as the peer resolves a folder's list.
            item["__includedFiles"] =
                included_files(client, repo, Some(branch), "", included).await?;
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parses_as_json_then_yaml_then_text() {
        assert_eq!(parse_content("{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(
            parse_content("name: x\nlist: [1, 2]\n"),
            json!({"name": "x", "list": [1, 2]})
        );
        assert_eq!(
            parse_content("---\na: 1\n---\nb: 2\n"),
            json!([{"a": 1}, {"b": 2}])
        );
        assert_eq!(parse_content("---\na: 1\n"), json!({"a": 1}));
        assert_eq!(
            parse_content("# Title\n\nSome text: with: colons"),
            json!("# Title\n\nSome text: with: colons")
        );
        assert_eq!(parse_content(""), json!(""));
    }

    #[test]
    fn included_paths_resolve_under_their_base() {
        assert_eq!(resolve("", "/README.md"), "README.md");
        assert_eq!(resolve(".", "README.md"), "README.md");
        assert_eq!(resolve("services/api", "port.yml"), "services/api/port.yml");
        assert_eq!(
            resolve("services/api", "services/api/port.yml"),
            "services/api/port.yml"
        );
    }

    #[test]
    fn listing_scopes_start_at_the_static_part() {
        assert_eq!(listing_scope("services/*"), ("services".into(), "oneLevel"));
        assert_eq!(
            listing_scope("services/api"),
            ("services".into(), "oneLevel")
        );
        assert_eq!(
            listing_scope("services/*/port.yml"),
            ("services".into(), "full")
        );
        assert_eq!(listing_scope("**/*.json"), ("".into(), "full"));
        assert_eq!(listing_scope("*.json"), ("".into(), "oneLevel"));
    }
}
