//! One module per resource kind. A kind is a small uniform unit ([`Kind`]): its selector options are a
//! type of its own ([`SelectorOptions`]), parsed once when the mapping is compiled ([`parse_options`]);
//! it lists its items page by page through the shared client, adds the enrichment fields the peer adds
//! (so existing mappings keep working), and sends each page to a [`PageSink`]. A kind that follows live
//! events also declares them ([`Kind::events`], see [`live`]) and reads one changed item back
//! ([`Kind::read_changed`]); the webhook's event types, the subscription catalogue and the processor's
//! dispatch are derived from [`ALL`]. Adding a kind = one file + one line in [`ALL`].

mod advanced_security_alert;
mod branch;
mod builds;
mod deployment;
mod environments;
mod listing;
mod parent;
mod pipeline;
mod project;
mod pull_request;
mod releases;
mod repository;
mod repository_policy;
mod test_run;
mod work_item;

mod board;
mod files;
mod glob;
mod identity;
pub mod live;
mod shared_lists;
mod team;
mod wiki;

pub use deployment::Deployment;
pub use work_item::SNAPSHOT_MAX_BYTES;
pub(crate) use work_item::work_item_project_name;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::{OnceCell, mpsc};

use super::{AdoClient, AdoError, ApiVersion, Request};
use crate::mapping::{CompiledResource, MappingError, ParsedOptions, ResourceConfig, Selector};
use crate::queue::message::ChangeMessage;
pub use live::{Changed, LiveContext, LiveError, LiveEvent, RawItem, Unnamed};

/// Where a kind delivers its pages. Either a bounded channel of raw pages (tests, previews) or a
/// [`PageHandler`] that takes each page as soon as it is listed. Kinds should send from inside their
/// concurrent request futures, so a page is handed over the moment it arrives instead of waiting, raw,
/// behind slower requests.
#[derive(Clone)]
pub struct PageSink {
    target: SinkTarget,
}

#[derive(Clone)]
enum SinkTarget {
    Channel(mpsc::Sender<Vec<Value>>),
    Handler(Arc<dyn PageHandler>),
}

/// Takes pages where they are listed. The resync maps each page here, so only the mapped entities, a
/// fraction of the raw JSON, wait for the catalog writes: memory stays at a few pages of entities
/// whatever the organisation's size and however many requests are in flight.
#[async_trait]
pub trait PageHandler: Send + Sync {
    async fn accept(&self, page: Vec<Value>) -> Result<(), AdoError>;
}

impl PageSink {
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Vec<Value>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                target: SinkTarget::Channel(tx),
            },
            rx,
        )
    }

    pub fn handler(handler: Arc<dyn PageHandler>) -> Self {
        Self {
            target: SinkTarget::Handler(handler),
        }
    }

    pub async fn send(&self, page: Vec<Value>) -> Result<(), AdoError> {
        if page.is_empty() {
            return Ok(());
        }
        match &self.target {
            SinkTarget::Channel(tx) => tx.send(page).await.map_err(|_| AdoError::Cancelled),
            SinkTarget::Handler(h) => h.accept(page).await,
        }
    }
}

/// What every kind of one pass shares: the client, the global filters, and the upstream lists that
/// several kinds need (fetched once per pass, on first use).
pub struct FetchContext {
    pub client: AdoClient,
    pub excluded_tags: Vec<String>,
    pub now: DateTime<Utc>,
    /// Lists only this project (name or id, any case): `ado-sync items --project`.
    only_project: Option<String>,
    projects: Shared<Vec<Value>>,
    repositories: Shared<Vec<Value>>,
    environments: Shared<Vec<Value>>,
    deployment: Shared<Deployment>,
    lists: shared_lists::SharedLists,
}

/// A list several kinds of one pass share, fetched once on first use. A failure is kept as well: every
/// kind that needs the list gets the same error at once, instead of each asking again and waiting out
/// its own retries (a refused PAT or an outage would otherwise cost one full retry cycle per kind).
pub(crate) struct Shared<T>(OnceCell<Result<Arc<T>, AdoError>>);

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self(OnceCell::new())
    }
}

impl<T> Shared<T> {
    pub(crate) async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<Arc<T>, AdoError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, AdoError>>,
    {
        self.0
            .get_or_init(|| async { fetch().await.map(Arc::new) })
            .await
            .clone()
    }
}

/// How many projects (or repositories) a kind works on at once; requests are bounded by the client anyway,
/// this only bounds how many per-project streams are open.
pub(crate) const PROJECT_CONCURRENCY: usize = 4;
#[allow(dead_code)] // for the per-repository kinds
pub(crate) const REPO_CONCURRENCY: usize = 8;
/// Page size for the list APIs that accept one. ADO caps most lists at 100 or more per page.
pub(crate) const PAGE_SIZE: u32 = 100;

const TAG_PREFIX: &str = "Microsoft.TeamFoundation.Project.Tag.";

impl FetchContext {
    pub fn new(client: AdoClient, excluded_tags: Vec<String>) -> Self {
        Self {
            client,
            excluded_tags,
            now: Utc::now(),
            only_project: None,
            projects: Shared::default(),
            repositories: Shared::default(),
            environments: Shared::default(),
            deployment: Shared::default(),
            lists: Default::default(),
        }
    }

    /// Every per-project kind of this pass lists only `project` (its name or id, any case).
    pub fn only_project(mut self, project: String) -> Self {
        self.only_project = Some(project);
        self
    }

    /// The organisation's projects, minus those carrying an excluded tag. Every per-project kind uses this
    /// list, so a tagged project is skipped everywhere.
    pub async fn projects(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.projects
            .get_or_fetch(|| async {
                let pages: Vec<Vec<Value>> = self
                    .client
                    .token_pages(Request::get("/_apis/projects"), Some(PAGE_SIZE), "value")
                    .try_collect()
                    .await?;
                let all: Vec<Value> = pages
                    .into_iter()
                    .flatten()
                    .filter(|p| {
                        self.only_project.as_deref().is_none_or(|only| {
                            str_field(p, "name").eq_ignore_ascii_case(only)
                                || str_field(p, "id").eq_ignore_ascii_case(only)
                        })
                    })
                    .collect();
                Ok(if self.excluded_tags.is_empty() {
                    all
                } else {
                    self.without_excluded(all).await
                })
            })
            .await
    }

    async fn without_excluded(&self, projects: Vec<Value>) -> Vec<Value> {
        let checks = futures::stream::iter(projects)
            .map(|p| async move {
                let id = str_field(&p, "id").to_owned();
                match carries_excluded_tag(&self.client, &id, &self.excluded_tags).await {
                    Ok(tagged) => {
                        if tagged {
                            tracing::info!(project = %str_field(&p, "name"), "project skipped: it carries an excluded tag");
                        }
                        (!tagged).then_some(p)
                    }
                    Err(e) => {
                        // Same choice as the peer: if the tags cannot be read, keep the project rather than
                        // hide it (hiding it would delete its entities).
                        tracing::warn!(project = %id, error = %e, "could not read project tags; keeping the project");
                        Some(p)
                    }
                }
            })
            .buffered(PROJECT_CONCURRENCY);
        checks.filter_map(|p| async move { p }).collect().await
    }

    /// Every repository of the (filtered) projects, fetched once per pass.
    pub async fn repositories(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.repositories
            .get_or_fetch(|| async {
                let projects = self.projects().await?;
                let per_project: Vec<Vec<Value>> = futures::stream::iter(projects.iter().cloned())
                    .map(|p| async move {
                        let id = str_field(&p, "id");
                        let reply = self
                            .client
                            .send(&Request::get(format!("/{id}/_apis/git/repositories")))
                            .await?;
                        Ok::<_, AdoError>(super::paging::take_items(reply.body, "value"))
                    })
                    .buffered(PROJECT_CONCURRENCY)
                    .try_collect()
                    .await?;
                Ok(per_project.into_iter().flatten().collect())
            })
            .await
    }
}

impl FetchContext {
    /// Every environment of the (filtered) projects, fetched once per pass: `environment` and
    /// `pipeline-deployment` both need it. A few per project, so holding it is cheap.
    pub async fn environments(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.environments
            .get_or_fetch(|| environments::list_all(self))
            .await
    }
}

/// Whether a project carries one of `excluded_tags` (ADO stores tags as project properties named
/// `Microsoft.TeamFoundation.Project.Tag.<tag>`). Shared by the listing and the live events, so a tagged
/// project is skipped by both.
pub(crate) async fn carries_excluded_tag(
    client: &AdoClient,
    project_id: &str,
    excluded_tags: &[String],
) -> Result<bool, AdoError> {
    let req = Request::get(format!("/_apis/projects/{project_id}/properties"))
        .query("keys", format!("{TAG_PREFIX}*"))
        .version(ApiVersion::Preview(1));
    let reply = client.send(&req).await?;
    Ok(super::paging::take_items(reply.body, "value")
        .iter()
        .any(|prop| {
            prop.get("name")
                .and_then(Value::as_str)
                .and_then(|n| n.strip_prefix(TAG_PREFIX))
                .is_some_and(|tag| excluded_tags.iter().any(|t| t == tag))
        }))
}

/// A kind's selector options in its own type, parsed from the selector once, when the mapping is
/// compiled (parse, don't validate): a bad option is refused with its field path before anything is
/// listed, and the listing and the live reads take the typed value instead of reading the selector.
pub trait SelectorOptions: Sized + Send + Sync + 'static {
    /// The option keys the kind reads, besides the ones every kind takes ([`COMMON_OPTIONS`]). Any other
    /// key is refused: a misspelt option would otherwise be ignored silently and the kind would list
    /// something else than the user asked for.
    const NAMES: &'static [&'static str];

    fn parse(selector: &Selector) -> Result<Self, OptionError>;
}

/// The options of a kind that takes none.
impl SelectorOptions for () {
    const NAMES: &'static [&'static str] = &[];

    fn parse(_: &Selector) -> Result<Self, OptionError> {
        Ok(())
    }
}

/// One mapping block of a kind with the options its selector was parsed into.
pub struct Block<'b, O> {
    pub resource: &'b CompiledResource,
    pub options: &'b O,
}

impl<O> Clone for Block<'_, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for Block<'_, O> {}

/// A resource kind: how it lists, which events refresh it and how it reads one changed item. Written
/// against its own option type; the registry holds it as a [`KindSource`].
#[async_trait]
pub trait Kind: Send + Sync + 'static {
    type Options: SelectorOptions;

    /// The kind name used in `port-app-config` (`project`, `work-item`, …).
    fn name(&self) -> &'static str;

    /// Lists every item, page by page, into `sink`.
    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &Self::Options,
        sink: &PageSink,
    ) -> Result<(), AdoError>;

    /// The service-hook events whose change refreshes this kind (each a `static` of the kind whose item
    /// it names). None: the kind follows the resync only.
    fn events(&self) -> &'static [&'static LiveEvent] {
        &[]
    }

    /// Reads back the current state of what `message` names, as the listing would produce it, for each
    /// of the mapping's `blocks` of this kind (what is gone as a [`RawItem::Gone`] shaped like its
    /// listed self, so a delete maps to the identifier the resync wrote). `None`: nothing to write (an
    /// excluded project, an item that cannot be identified).
    async fn read_changed<'b>(
        &self,
        _cx: &LiveContext<'_>,
        _message: &ChangeMessage,
        _blocks: &[Block<'b, Self::Options>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        Ok(None)
    }
}

/// A [`Kind`] with its option type erased, as the registry, the resync and the live path hold it.
#[async_trait]
pub trait KindSource: Send + Sync {
    fn name(&self) -> &'static str;

    /// The option keys the kind reads ([`SelectorOptions::NAMES`]).
    fn option_names(&self) -> &'static [&'static str];

    /// Parses a selector's options into the kind's type, for [`CompiledResource::options`].
    fn parse(&self, selector: &Selector) -> Result<ParsedOptions, OptionError>;

    /// Lists every item of `resource` (a block of this kind) into `sink`.
    async fn fetch(
        &self,
        ctx: &FetchContext,
        resource: &CompiledResource,
        sink: &PageSink,
    ) -> Result<(), AdoError>;

    fn events(&self) -> &'static [&'static LiveEvent];

    /// See [`Kind::read_changed`]; `blocks` are blocks of this kind.
    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[&'b CompiledResource],
    ) -> Result<Option<Changed<'b>>, LiveError>;
}

/// The options `resource` was compiled with, as `K` parsed them. Only a resource compiled without
/// [`parse_options`] (or of another kind) lacks them: a bug, reported as such rather than guessed at.
fn options_of<'b, K: Kind>(
    kind: &K,
    resource: &'b CompiledResource,
) -> Result<&'b K::Options, OptionError> {
    resource.options().get::<K::Options>().ok_or_else(|| {
        OptionError::new(
            "selector",
            format!(
                "resources[{}] ({}) was compiled without the options of kind {}",
                resource.index(),
                resource.kind(),
                kind.name()
            ),
        )
    })
}

#[async_trait]
impl<K: Kind> KindSource for K {
    fn name(&self) -> &'static str {
        Kind::name(self)
    }

    fn option_names(&self) -> &'static [&'static str] {
        K::Options::NAMES
    }

    fn parse(&self, selector: &Selector) -> Result<ParsedOptions, OptionError> {
        K::Options::parse(selector).map(ParsedOptions::new)
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        resource: &CompiledResource,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let options = options_of(self, resource).map_err(|e| option_error(Kind::name(self), e))?;
        Kind::fetch(self, ctx, options, sink).await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        Kind::events(self)
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[&'b CompiledResource],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let blocks = blocks
            .iter()
            .map(|&resource| {
                options_of(self, resource)
                    .map(|options| Block { resource, options })
                    .map_err(LiveError::block_option(resource))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Kind::read_changed(self, cx, message, &blocks).await
    }
}

/// Every kind this build serves.
pub static ALL: &[&dyn KindSource] = &[
    &project::Project,
    &repository::Repository,
    &pull_request::PullRequest,
    &pipeline::Pipeline,
    &work_item::WorkItem,
    &repository_policy::RepositoryPolicy,
    &branch::Branch,
    &builds::Build,
    &builds::PipelineRun,
    &builds::PipelineStage,
    &environments::PipelineDeployment,
    &environments::Environment,
    &releases::Release,
    &releases::ReleaseDefinition,
    &releases::ReleaseDeployment,
    &test_run::TestRun,
    &advanced_security_alert::AdvancedSecurityAlert,
    &team::Team,
    &team::Member,
    &identity::User,
    &identity::Group,
    &identity::GroupMember,
    &board::Board,
    &board::Column,
    &board::Iteration,
    &board::AreaPath,
    &wiki::Wiki,
    &files::File,
    &files::Folder,
];

pub fn find(name: &str) -> Option<&'static dyn KindSource> {
    ALL.iter().copied().find(|k| k.name() == name)
}

/// Every event some kind follows, once each, in registry order: what the webhook queues and what we
/// subscribe to.
pub fn live_events() -> &'static [&'static LiveEvent] {
    static EVENTS: std::sync::OnceLock<Vec<&'static LiveEvent>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let mut out: Vec<&'static LiveEvent> = Vec::new();
        for event in ALL.iter().flat_map(|k| k.events()) {
            if !out.iter().any(|e| std::ptr::eq(*e, *event)) {
                out.push(event);
            }
        }
        out
    })
}

/// The event of that type, if a kind follows it.
pub fn live_event(event_type: &str) -> Option<&'static LiveEvent> {
    live_events()
        .iter()
        .copied()
        .find(|e| e.spec.event_type == event_type)
}

/// The kinds a change delivered as `event_type` refreshes, in registry order.
pub fn refreshed_by(event_type: &str) -> impl Iterator<Item = &'static dyn KindSource> + '_ {
    ALL.iter()
        .copied()
        .filter(move |k| k.events().iter().any(|e| e.spec.event_type == event_type))
}

/// Selector keys every kind accepts besides `query` (which the mapping parser takes out): the peer's
/// selectors carry `exportEnvVariables` too, so a mapping written for it keeps compiling.
pub const COMMON_OPTIONS: &[&str] = &["exportEnvVariables"];

/// A selector option a kind cannot use: which option, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct OptionError {
    pub option: String,
    pub message: String,
}

impl OptionError {
    pub(crate) fn new(option: &str, message: impl std::fmt::Display) -> Self {
        Self {
            option: option.to_owned(),
            message: message.to_string(),
        }
    }
}

/// The selector helpers name the option in their key (`selector.defaultTeam`).
impl From<MappingError> for OptionError {
    fn from(e: MappingError) -> Self {
        match e {
            MappingError::Invalid { key, message } => Self {
                option: key.strip_prefix("selector.").unwrap_or(&key).to_owned(),
                message,
            },
            other => Self::new("selector", other),
        }
    }
}

/// Parses the selector options of the resource at `index` into its kind's type (the parser
/// [`CompiledConfig::compile`](crate::mapping::CompiledConfig::compile) takes), refusing before any call
/// what no pass could use: an unknown kind, a selector option the kind does not know, or an option
/// value of the wrong type or out of range. The error names the field, e.g. `resources[3].selector.wiqll`.
pub fn parse_options(
    index: usize,
    resource: &ResourceConfig,
) -> Result<ParsedOptions, MappingError> {
    let Some(kind) = find(&resource.kind) else {
        let known: Vec<&str> = ALL.iter().map(|k| k.name()).collect();
        return Err(MappingError::Invalid {
            key: format!("resources[{index}].kind"),
            message: format!(
                "unknown kind {:?} (known: {})",
                resource.kind,
                known.join(", ")
            ),
        });
    };
    let names = kind.option_names();
    if let Some(unknown) = resource
        .selector
        .options
        .keys()
        .find(|k| !names.contains(&k.as_str()) && !COMMON_OPTIONS.contains(&k.as_str()))
    {
        let known: Vec<&str> = std::iter::once("query")
            .chain(names.iter().copied())
            .collect();
        return Err(MappingError::Invalid {
            key: format!("resources[{index}].selector.{unknown}"),
            message: format!(
                "unknown option for kind {} (known: {})",
                kind.name(),
                known.join(", ")
            ),
        });
    }
    kind.parse(&resource.selector)
        .map_err(|e| MappingError::Invalid {
            key: format!("resources[{index}].selector.{}", e.option),
            message: e.message,
        })
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A selector option error, reported as an invalid request before any call is made.
pub(crate) fn option_error(kind: &str, e: impl std::fmt::Display) -> AdoError {
    AdoError::invalid(format!("{kind} selector: {e}"))
}

/// "Healthy" repositories are the ones whose project is live and which are not disabled: the per-repo APIs
/// fail on the others.
pub(crate) fn is_healthy_repo(repo: &Value) -> bool {
    let project_state = repo
        .pointer("/project/state")
        .and_then(Value::as_str)
        .unwrap_or("wellFormed");
    let disabled = repo
        .get("isDisabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    !disabled
        && !matches!(
            project_state,
            "deleted" | "deleting" | "new" | "createPending"
        )
}

#[cfg(test)]
mod tests {
    use crate::tenant::{self, SetupError, compile_mapping};

    fn block(kind: &str, options: &str) -> String {
        format!(
            "  - kind: {kind}\n    selector:\n      query: 'true'\n{options}    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"x\"'\n"
        )
    }

    /// The mapping's error as the user reads it, when the fourth block is `kind` with `options`.
    fn refusal(kind: &str, options: &str) -> String {
        let text = format!(
            "resources:\n{}{}{}{}",
            block("project", ""),
            block("repository", ""),
            block("pipeline", ""),
            block(kind, options)
        );
        match compile_mapping(&text, "test", false) {
            Err(e @ SetupError::Mapping { .. }) => e.to_string(),
            other => panic!("expected a mapping error, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_kind_fails_compile_with_its_path() {
        let e = refusal("work-items", "");
        assert!(e.contains("resources[3].kind"), "{e}");
        assert!(e.contains("unknown kind \"work-items\""), "{e}");
        assert!(e.contains("work-item,"), "the known kinds are listed: {e}");
    }

    #[test]
    fn an_unknown_option_fails_compile_with_its_path_and_the_known_ones() {
        let e = refusal("work-item", "      wiqll: \"[System.State] = 'New'\"\n");
        assert!(
            e.contains(
                "resources[3].selector.wiqll: unknown option for kind work-item (known: query, wiql, expand)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_wrongly_typed_option_fails_compile_with_its_path() {
        let e = refusal("project", "      defaultTeam: [yes]\n");
        assert!(e.contains("resources[3].selector.defaultTeam"), "{e}");
        let e = refusal("pull-request", "      maxResults: 0\n");
        assert!(e.contains("resources[3].selector.maxResults"), "{e}");
        assert!(e.contains("at least 1"), "{e}");
        let e = refusal("user", "      includeFields: [license, salary]\n");
        assert!(e.contains("resources[3].selector.includeFields"), "{e}");
        let e = refusal("file", "      files: {path: 3}\n");
        assert!(e.contains("resources[3].selector.files"), "{e}");
        let e = refusal(
            "file",
            "      files: {path: a.json}\n      includedFiles: {README.md: 1}\n",
        );
        assert!(e.contains("resources[3].selector.includedFiles"), "{e}");
    }

    #[test]
    fn a_kind_lists_with_the_options_parsed_at_compile() {
        let text = format!(
            "resources:\n{}{}",
            block("pull-request", "      maxResults: 3\n"),
            block("project", "")
        );
        let compiled = compile_mapping(&text, "test", false).unwrap();
        let [pull_requests, projects] = compiled.resources() else {
            panic!("two resources")
        };
        let options = pull_requests
            .options()
            .get::<super::pull_request::Options>()
            .expect("the pull-request options, typed");
        assert_eq!(options.max_results, 3);
        assert_eq!(options.min_time_in_days, 7, "the default");
        assert!(
            projects
                .options()
                .get::<super::pull_request::Options>()
                .is_none()
        );
    }

    /// A resource compiled without its kind's options (another parser, another kind) is refused before
    /// any request, never listed with guessed options.
    #[tokio::test]
    async fn a_resource_without_its_kinds_options_fails_the_listing_before_any_request() {
        use crate::mapping::{CompiledConfig, MappingOptions, ParsedOptions, PortAppConfig};
        let text = format!("resources:\n{}", block("pull-request", ""));
        let compiled = CompiledConfig::compile(
            PortAppConfig::parse(&text).unwrap(),
            &MappingOptions::default(),
            &|_, _| Ok(ParsedOptions::new(())),
        )
        .unwrap();
        let client = super::AdoClient::new(super::super::AdoClientConfig::new(
            super::super::OrgUrl::parse("http://127.0.0.1:9/org").unwrap(),
            secrecy::SecretString::from("pat".to_owned()),
        ))
        .unwrap();
        let ctx = super::FetchContext::new(client.clone(), Vec::new());
        let (sink, _pages) = super::PageSink::channel(1);
        let kind = super::find("pull-request").unwrap();
        let e = kind
            .fetch(&ctx, &compiled.resources()[0], &sink)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("compiled without the options of kind pull-request"),
            "{e}"
        );
        assert_eq!(client.requests_made(), 0);
    }

    #[test]
    fn every_mapping_we_ship_or_the_peer_documents_compiles() {
        for (name, text) in [
            ("default", tenant::DEFAULT_MAPPING),
            ("server default", tenant::DEFAULT_MAPPING_SERVER),
            (
                "peer default",
                include_str!("../../../testdata/mapping/port-app-config.yaml"),
            ),
            (
                "all kinds",
                include_str!("../../../../tests/data/mapping-all-kinds.yaml"),
            ),
        ] {
            if let Err(e) = compile_mapping(text, name, false) {
                panic!("{name}: {e}");
            }
        }
        // Every option of the peer's documentation (§1) and of its example mappings, with the common
        // `exportEnvVariables`.
        let peer_options = [
            ("project", "      defaultTeam: 'true'\n"),
            ("repository", "      includedFiles: [README.md]\n"),
            (
                "pull-request",
                "      minTimeInDays: 3\n      maxResults: 10\n",
            ),
            ("pipeline", "      includeRepo: true\n"),
            ("build", "      enrichWithFirstCommit: true\n"),
            (
                "team",
                "      includeMembers: true\n      includeAreaPaths: true\n",
            ),
            (
                "work-item",
                "      wiql: \"[System.State] = 'New'\"\n      expand: All\n",
            ),
            (
                "release",
                "      expand: environments\n      statusFilter: active\n      tagFilter: [a, b]\n      sourceBranchFilter: main\n      minCreatedTime: '2024-01-01T00:00:00Z'\n      maxCreatedTime: '2025-01-01T00:00:00Z'\n",
            ),
            (
                "release-definition",
                "      expand: environments\n      tagFilter: [a]\n",
            ),
            ("release-deployment", "      includeRelease: true\n"),
            (
                "test-run",
                "      includeResults: false\n      codeCoverage: {flags: 7}\n",
            ),
            (
                "file",
                "      files: {path: ['*.json', README.md], repos: [api]}\n      includedFiles: [README.md]\n",
            ),
            (
                "user",
                "      source: entitlements\n      includeFields: [license, projects]\n      apiVersion: '7.1-preview.3'\n",
            ),
            (
                "user",
                "      source: graph\n      subjectTypes: [aad, msa]\n      includeGroupMemberships: true\n",
            ),
            (
                "folder",
                "      project_name: Proj\n      folders: [{path: 'services/*', repos: [{name: api, branch: main}]}]\n      includedFiles: [README.md]\n",
            ),
            ("area-path", "      depth: 2\n"),
            (
                "advanced-security-alert",
                "      criteria: {states: [active], severity: [high], alertType: code}\n",
            ),
            (
                "wiki",
                "      wikiType: projectWiki\n      includeContent: true\n      apiVersion: '7.1'\n",
            ),
            ("branch", "      exportEnvVariables: [HOME]\n"),
        ];
        for (kind, options) in peer_options {
            let text = format!("resources:\n{}", block(kind, options));
            if let Err(e) = compile_mapping(&text, kind, false) {
                panic!("{kind}: {e}");
            }
        }
    }

    #[test]
    fn the_server_default_is_the_default_without_the_kinds_server_lacks() {
        let parse = |t: &str| serde_saphyr::from_str::<serde_json::Value>(t).unwrap();
        let mut full = parse(tenant::DEFAULT_MAPPING);
        let server = parse(tenant::DEFAULT_MAPPING_SERVER);
        let lacking = ["user", "group", "group-member", "advanced-security-alert"];
        let resources = full["resources"].as_array_mut().unwrap();
        let before = resources.len();
        resources.retain(|r| !lacking.contains(&r["kind"].as_str().unwrap()));
        assert_eq!(resources.len(), before - lacking.len());
        assert_eq!(full, server);
    }
}
