//! One tenant's assembled dependencies ([`Tenant`]), built from its [`Settings`] once per process (a Lambda
//! cold start, a CLI run): the ADO client, the catalog adapter and the mapping source. It only assembles:
//! the use cases (`resync::run`, `sync::apply`) take the ports it supplies. Everything that can be wrong in configuration
//! fails here, before any Azure DevOps call.
//!
//! The mapping comes from, in order: the catalog's integration record (`integration.config`, where the
//! peer keeps it and users edit it), else `MAPPING_FILE` or `MAPPING`, else the shipped default. It is
//! read again at most once a minute ([`MappingSource`]), for the resync and the live path alike.

use std::sync::Arc;

use async_trait::async_trait;

use crate::actions::execute::ActionPorts;
use crate::actions::{self, ActionRuns};
use crate::ado::kinds::{self, Deployment};
use crate::ado::{AdoClient, AdoError};
use crate::catalog::defaults::{self, InitReport};
#[cfg(feature = "embedded")]
use crate::catalog::embedded::EmbeddedCatalog;
use crate::catalog::port::{PortClient, PortConfig};
use crate::catalog::{Catalog, CatalogAdmin, CatalogError, Failure};
use crate::config::{CatalogTarget, MappingSetting, MappingSettings, Settings};
use crate::mapping::source::{
    Clock, MappingSource, MappingUnavailable, ResolveMapping, SystemClock,
};
use crate::mapping::{CompiledConfig, MappingError, MappingOptions, PortAppConfig};
use crate::queue::{Change, ChangeMessage};
use crate::resync::preview::{Preview, PreviewCatalog};
use crate::resync::{self, Observer, ResyncPorts, RunReport};
use crate::sync::{self, Applied, LivePorts, SyncError};

/// The integration type in the catalog's ownership tag: the same as the Python peer's, so entities it
/// created are ours when the integration identifier matches.
pub const INTEGRATION_TYPE: &str = "azure-devops";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The shipped default mapping and blueprints: the mapping when neither the catalog nor the settings
/// give one; both are what `INITIALIZE_PORT_RESOURCES` creates.
pub const DEFAULT_MAPPING: &str = include_str!("../defaults/port-app-config.yaml");
/// The default mapping for Azure DevOps Server: [`DEFAULT_MAPPING`] without the kinds Server cannot
/// serve (`user`, `group`, `group-member`, `advanced-security-alert`).
pub const DEFAULT_MAPPING_SERVER: &str = include_str!("../defaults/port-app-config-server.yaml");
pub const DEFAULT_BLUEPRINTS: &str = include_str!("../defaults/blueprints.json");

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read the mapping file {path}: {source}")]
    MappingFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid mapping ({origin}): {source}")]
    Mapping {
        origin: String,
        source: MappingError,
    },
    #[error(transparent)]
    Ado(#[from] AdoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The shipped default mapping for the product behind the organisation URL.
pub fn default_mapping(deployment: Deployment) -> &'static str {
    match deployment {
        Deployment::Services => DEFAULT_MAPPING,
        Deployment::Server => DEFAULT_MAPPING_SERVER,
    }
}

/// The shipped default for this organisation: the Server one on Azure DevOps Server (one
/// `connectionData` call for a server URL, none for a cloud one).
async fn detected_default(ado: &AdoClient) -> Result<(String, &'static str), SetupError> {
    let deployment = Deployment::detect(ado).await?;
    Ok(match deployment {
        Deployment::Services => ("the default mapping".to_owned(), DEFAULT_MAPPING),
        Deployment::Server => (
            "the default mapping for Azure DevOps Server".to_owned(),
            DEFAULT_MAPPING_SERVER,
        ),
    })
}

/// Loads and compiles the local mapping: `MAPPING_FILE` or `MAPPING` if set, else the shipped default
/// (the Services one: this makes no request; [`resolve_mapping`] picks the Server default on Server).
pub fn load_mapping(settings: &MappingSettings) -> Result<CompiledConfig, SetupError> {
    let (origin, text) = local_mapping(settings)?;
    compile_mapping(&text, &origin, settings.allow_env)
}

fn local_mapping(settings: &MappingSettings) -> Result<(String, String), SetupError> {
    Ok(match &settings.source {
        MappingSetting::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SetupError::MappingFile {
                path: path.display().to_string(),
                source,
            })?;
            (format!("MAPPING_FILE {}", path.display()), text)
        }
        MappingSetting::Inline(text) => ("MAPPING".to_owned(), text.clone()),
        MappingSetting::Default => ("the default mapping".to_owned(), DEFAULT_MAPPING.to_owned()),
    })
}

/// The mapping of the catalog's integration record, when it has one (a non-empty `config`).
fn record_mapping(record: &serde_json::Value) -> Option<String> {
    record
        .get("config")
        .filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
        .map(ToString::to_string)
}

/// Resolves and compiles the mapping in source order, logging the source used: the catalog's
/// integration record (when there is an admin side), else `MAPPING_FILE`/`MAPPING`, else the shipped
/// default for the product behind `ado`.
pub async fn resolve_mapping(
    settings: &MappingSettings,
    ado: &AdoClient,
    admin: Option<&dyn CatalogAdmin>,
) -> Result<CompiledConfig, SetupError> {
    if let Some(admin) = admin {
        match admin.integration().await?.as_ref().map(record_mapping) {
            Some(Some(text)) => {
                if !matches!(settings.source, MappingSetting::Default) {
                    tracing::warn!(
                        "the catalog's integration record has a mapping, which wins over MAPPING_FILE / MAPPING; edit the mapping in the catalog, or empty its config to use the setting"
                    );
                }
                tracing::info!(source = "catalog integration record", "mapping loaded");
                return compile_mapping(
                    &text,
                    "the catalog's integration record",
                    settings.allow_env,
                );
            }
            Some(None) => tracing::info!("the catalog's integration record has no mapping"),
            None => tracing::info!("the catalog has no integration record"),
        }
    }
    let (origin, text) = match settings.source {
        MappingSetting::Default => {
            let (origin, text) = detected_default(ado).await?;
            (origin, text.to_owned())
        }
        _ => local_mapping(settings)?,
    };
    tracing::info!(source = %origin, "mapping loaded");
    compile_mapping(&text, &origin, settings.allow_env)
}

/// The source order as a [`ResolveMapping`], for the [`MappingSource`] of a runtime that reads the
/// catalog's integration record.
struct SourceOrder {
    settings: MappingSettings,
    ado: AdoClient,
    admin: Arc<dyn CatalogAdmin>,
}

#[async_trait]
impl ResolveMapping for SourceOrder {
    async fn resolve(&self) -> Result<CompiledConfig, MappingUnavailable> {
        resolve_mapping(&self.settings, &self.ado, Some(self.admin.as_ref()))
            .await
            .map_err(|e| MappingUnavailable {
                source: Box::new(e),
            })
    }
}

/// The integration record `INITIALIZE_PORT_RESOURCES` creates: the peer's create body, with the
/// shipped default mapping (for Azure DevOps Services).
pub fn default_integration_record() -> Result<serde_json::Value, SetupError> {
    integration_record_for(Deployment::Services)
}

/// [`default_integration_record`] with the default mapping of the given product.
pub fn integration_record_for(deployment: Deployment) -> Result<serde_json::Value, SetupError> {
    let config: serde_json::Value =
        serde_saphyr::from_str(default_mapping(deployment)).map_err(|e| SetupError::Mapping {
            origin: "the default mapping".into(),
            source: MappingError::Parse(Box::new(e)),
        })?;
    Ok(serde_json::json!({
        "installationAppType": INTEGRATION_TYPE,
        "version": VERSION,
        "changelogDestination": {},
        "config": config,
        "actionsProcessingEnabled": false,
        "incrementalSyncEnabled": false,
        "createPortResourcesOrigin": "Ocean",
    }))
}

pub fn compile_mapping(
    text: &str,
    origin: &str,
    allow_env: bool,
) -> Result<CompiledConfig, SetupError> {
    let wrap = |source| SetupError::Mapping {
        origin: origin.to_owned(),
        source,
    };
    let config = PortAppConfig::parse(text).map_err(wrap)?;
    // Kinds and their options are parsed here, not at the pass: a misspelt option is refused before
    // anything is listed, written or deleted, and no pass reads the selector again.
    CompiledConfig::compile(config, &MappingOptions { allow_env }, &kinds::parse_options)
        .map_err(wrap)
}

/// Opens the configured catalog adapter.
pub fn open_catalog(settings: &Settings) -> Result<Arc<dyn Catalog>, SetupError> {
    Ok(Catalogs::ALL.open(settings)?.0)
}

type Adapters = (Arc<dyn Catalog>, Option<Arc<dyn CatalogAdmin>>);

/// Which catalog adapters a program can open, chosen where the program starts. It is a function
/// rather than a flag so that the choice is made at compile time: a program that starts with
/// [`Catalogs::API_ONLY`] (the Lambda functions) never names the embedded catalog, so SQLite is not
/// linked into it even when cargo unified `shared`'s `embedded` feature into its build (a workspace
/// build such as `sam build` does; `scripts/sam.sh` checks the bootstraps).
#[derive(Clone, Copy)]
pub struct Catalogs(fn(&Settings) -> Result<Adapters, SetupError>);

impl Catalogs {
    /// The catalog API only; `CATALOG_DB` is refused.
    pub const API_ONLY: Catalogs = Catalogs(open_api);
    /// The catalog API or the embedded SQLite catalog (`CATALOG_DB`): the CLI, the simulator, tests.
    #[cfg(feature = "embedded")]
    pub const WITH_EMBEDDED: Catalogs = Catalogs(open_with_embedded);
    /// Every adapter this build of `shared` has.
    #[cfg(feature = "embedded")]
    pub const ALL: Catalogs = Self::WITH_EMBEDDED;
    /// Every adapter this build of `shared` has.
    #[cfg(not(feature = "embedded"))]
    pub const ALL: Catalogs = Self::API_ONLY;

    fn open(self, settings: &Settings) -> Result<Adapters, SetupError> {
        (self.0)(settings)
    }
}

#[cfg(feature = "embedded")]
fn open_with_embedded(settings: &Settings) -> Result<Adapters, SetupError> {
    let CatalogTarget::Embedded { path } = &settings.catalog else {
        return open_api(settings);
    };
    let datasource =
        crate::catalog::datasource(INTEGRATION_TYPE, VERSION, &settings.integration_identifier);
    let catalog: Arc<dyn Catalog> = Arc::new(EmbeddedCatalog::open(path, datasource)?);
    Ok((catalog, None))
}

/// The Port API adapter and its admin side.
fn open_api(settings: &Settings) -> Result<Adapters, SetupError> {
    let CatalogTarget::Port {
        base_url,
        client_id,
        client_secret,
        timeout,
        max_retries,
    } = &settings.catalog
    else {
        return Err(SetupError::Catalog(CatalogError::Invalid(Failure::new(
            "CATALOG_DB: the embedded catalog is for the CLI; here the catalog is the catalog API (set CATALOG_BASE_URL)",
        ))));
    };
    let client = Arc::new(PortClient::new(PortConfig {
        base_url: base_url.clone(),
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        integration_identifier: settings.integration_identifier.clone(),
        integration_type: INTEGRATION_TYPE.to_owned(),
        version: VERSION.to_owned(),
        timeout: *timeout,
        max_retries: *max_retries,
    })?);
    let catalog: Arc<dyn Catalog> = client.clone();
    let admin: Arc<dyn CatalogAdmin> = client;
    Ok((catalog, Some(admin)))
}

/// One tenant's assembled dependencies (one organisation, one catalog, one mapping), built once: it
/// supplies their ports to the use cases.
pub struct Tenant {
    pub settings: Settings,
    pub ado: AdoClient,
    pub catalog: Arc<dyn Catalog>,
    /// The integration record and blueprints (the Port API only).
    pub admin: Option<Arc<dyn CatalogAdmin>>,
    /// The mapping under its one lifetime rule ([`MappingSource`]): read again at most once a minute
    /// when it came from the source order ([`Tenant::start`]), fixed otherwise.
    pub mapping_source: Arc<MappingSource>,
    /// The catalog's action runs when they are not the admin side's (the demo's simulated catalog
    /// beside an embedded one).
    action_runs: Option<Arc<dyn ActionRuns>>,
}

impl Tenant {
    /// The cold start of a function or a CLI run: the mapping in source order (the catalog's
    /// integration record first), which reads the catalog once.
    pub async fn start(settings: Settings) -> Result<Self, SetupError> {
        Self::start_with(settings, Catalogs::ALL).await
    }

    /// [`Tenant::start`] opening only these catalogs (the Lambda functions: [`Catalogs::API_ONLY`]).
    pub async fn start_with(settings: Settings, catalogs: Catalogs) -> Result<Self, SetupError> {
        Self::start_opening(settings, catalogs, Arc::new(SystemClock)).await
    }

    /// [`Tenant::start`] with the clock the mapping's lifetime is measured on.
    pub async fn start_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SetupError> {
        Self::start_opening(settings, Catalogs::ALL, clock).await
    }

    async fn start_opening(
        settings: Settings,
        catalogs: Catalogs,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SetupError> {
        let (catalog, admin) = catalogs.open(&settings)?;
        let ado = AdoClient::from_settings(&settings.ado)?;
        let mapping = resolve_mapping(&settings.mapping, &ado, admin.as_deref()).await?;
        // Only the integration record changes while a process runs; local settings do not.
        let source = match &admin {
            Some(admin) => MappingSource::resolving(
                mapping,
                Box::new(SourceOrder {
                    settings: settings.mapping.clone(),
                    ado: ado.clone(),
                    admin: admin.clone(),
                }),
                clock,
            ),
            None => MappingSource::fixed(mapping),
        };
        Ok(Self::from_parts(settings, ado, catalog, admin, source))
    }

    /// Without reading the catalog: the local mapping (`MAPPING_FILE`, `MAPPING` or the default).
    pub fn new(settings: Settings) -> Result<Self, SetupError> {
        let mapping = load_mapping(&settings.mapping)?;
        Self::with_mapping(settings, mapping)
    }

    /// The configured adapters with this mapping, fixed.
    pub fn with_mapping(settings: Settings, mapping: CompiledConfig) -> Result<Self, SetupError> {
        let (catalog, admin) = Catalogs::ALL.open(&settings)?;
        let ado = AdoClient::from_settings(&settings.ado)?;
        Ok(Self::from_parts(
            settings,
            ado,
            catalog,
            admin,
            MappingSource::fixed(mapping),
        ))
    }

    /// Assembles given parts (tests put fakes in place of the adapters).
    pub fn from_parts(
        settings: Settings,
        ado: AdoClient,
        catalog: Arc<dyn Catalog>,
        admin: Option<Arc<dyn CatalogAdmin>>,
        mapping: MappingSource,
    ) -> Self {
        Self {
            settings,
            ado,
            catalog,
            admin,
            mapping_source: Arc::new(mapping),
            action_runs: None,
        }
    }

    /// The mapping to use now, for the live path: read again when a minute old; when that read fails
    /// the last good mapping is used (logged), as a live change cannot wait for the catalog.
    pub async fn mapping(&self) -> Arc<CompiledConfig> {
        match self.mapping_source.current().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the mapping could not be read again: using the last one");
                self.mapping_source.last()
            }
        }
    }

    /// The ports a resync pass takes.
    pub fn resync_ports(&self) -> ResyncPorts<'_> {
        ResyncPorts {
            ado: &self.ado,
            catalog: self.catalog.as_ref(),
            mapping: &self.mapping_source,
            excluded_tags: &self.settings.excluded_tags,
        }
    }

    /// Takes the action runs from this adapter instead of the catalog's admin side.
    pub fn with_action_runs(mut self, runs: Arc<dyn ActionRuns>) -> Self {
        self.action_runs = Some(runs);
        self
    }

    /// The catalog's action-run API, when the catalog has one (the Port API does, the embedded
    /// catalog does not).
    pub fn action_runs(&self) -> Option<&dyn ActionRuns> {
        self.action_runs
            .as_deref()
            .or_else(|| self.admin.as_deref().and_then(|a| a.action_runs()))
    }

    /// Applies one queued message with this runtime's ports: an action job is executed
    /// ([`actions::execute`]); a change is applied ([`sync::apply`]) with the mapping as it is now, and a
    /// completed pipeline run is reported to the action run that started it ([`actions::complete`])
    /// when actions are enabled.
    pub async fn apply(&self, message: &ChangeMessage) -> Result<Applied, SyncError> {
        if let Change::Action(job) = &message.change {
            let ports = self.action_ports().map_err(|e| *e)?;
            let executed = actions::execute::execute(ports, job).await?;
            tracing::info!(action_run = %job.run_id, outcome = ?executed, "action job done");
            return Ok(Applied {
                kinds: vec!["action".to_owned()],
                ..Applied::default()
            });
        }
        let mapping = self.mapping().await;
        let ports = LivePorts {
            ado: &self.ado,
            catalog: self.catalog.as_ref(),
            mapping: &mapping,
            excluded_tags: &self.settings.excluded_tags,
        };
        let applied = sync::apply(ports, message).await?;
        if let (
            true,
            Change::PipelineRun {
                pipeline_id: Some(pipeline),
                run_id: Some(run),
                stage_id: None,
                completed: true,
            },
            Some(project),
        ) = (
            self.settings.actions.enabled,
            &message.change,
            message.project_id,
        ) {
            let completed = actions::complete::complete(
                self.action_ports().map_err(|e| *e)?,
                project,
                *pipeline,
                *run,
            )
            .await?;
            tracing::info!(pipeline_run = run, outcome = ?completed, "pipeline completion checked");
        }
        Ok(applied)
    }

    /// The action use cases' ports; an action needs the catalog API's action runs.
    fn action_ports(&self) -> Result<ActionPorts<'_>, Box<SyncError>> {
        let runs = self.action_runs().ok_or_else(|| Box::new(SyncError::Permanent {
            context: "executing an action".to_owned(),
            source: sync::Cause::Catalog(CatalogError::invalid(
                "self-service actions need the catalog API's action runs (CATALOG_BASE_URL); the embedded catalog has none",
            )),
        }))?;
        Ok(ActionPorts {
            ado: &self.ado,
            runs,
        })
    }

    /// `INITIALIZE_PORT_RESOURCES`: creates the missing default blueprints and, when the mapping is the
    /// shipped default, the missing integration record. With `MAPPING_FILE` or `MAPPING` set the record
    /// is not created: its mapping would win over the setting from then on. `None` when off or when the
    /// catalog is the embedded one.
    pub async fn initialize(&self) -> Option<Result<InitReport, SetupError>> {
        if !self.settings.initialize_port_resources {
            return None;
        }
        let admin = self.admin.as_deref()?;
        let run = async {
            let blueprints: Vec<serde_json::Value> = serde_json::from_str(DEFAULT_BLUEPRINTS)
                .map_err(|e| {
                    CatalogError::Invalid(Failure::new("the default blueprints").with_source(e))
                })?;
            let record = match self.settings.mapping.source {
                MappingSetting::Default => Some(integration_record_for(
                    Deployment::detect(&self.ado).await?,
                )?),
                _ => {
                    tracing::info!(
                        "MAPPING_FILE or MAPPING is set: a missing integration record is not created"
                    );
                    None
                }
            };
            Ok::<_, SetupError>(defaults::initialize(admin, &blueprints, record).await?)
        };
        Some(run.await)
    }

    /// A pass that writes nothing (`resync --dry-run`): listed, mapped and compared with the catalog
    /// like a real pass, with every write and deletion recorded in the [`Preview`] instead. Nothing is
    /// initialized either: a missing blueprint shows as entities to create.
    pub async fn preview_until(
        &self,
        observer: &dyn Observer,
        deadline: Option<tokio::time::Instant>,
    ) -> (RunReport, Preview) {
        let catalog = PreviewCatalog::dry_run(Arc::clone(&self.catalog));
        let ports = ResyncPorts {
            catalog: &catalog,
            ..self.resync_ports()
        };
        let report = resync::run(ports, observer, deadline).await;
        (report, catalog.preview())
    }

    /// One pass without a deadline; see [`Tenant::resync_until`].
    pub async fn resync(&self, observer: &dyn Observer) -> RunReport {
        self.resync_until(observer, None).await
    }

    /// One pass, after [`Tenant::initialize`]. A failed initialization is logged and the pass goes
    /// on: entities of a blueprint that could not be created fail on their own and are reported. The
    /// pass itself is [`resync::run`] on this runtime's ports.
    pub async fn resync_until(
        &self,
        observer: &dyn Observer,
        deadline: Option<tokio::time::Instant>,
    ) -> RunReport {
        match self.initialize().await {
            Some(Ok(r)) => tracing::info!(
                created = r.created_blueprints.len(),
                existing = r.existing_blueprints.len(),
                integration_created = r.integration_created,
                "port resources initialized"
            ),
            Some(Err(e)) => tracing::error!(error = %e, "port resources could not be initialized"),
            None => {}
        }
        let started = chrono::Utc::now();
        self.report_state(serde_json::json!({
            "status": "running",
            "lastResyncStart": started,
            "lastResyncEnd": null,
        }))
        .await;
        let report = resync::run(self.resync_ports(), observer, deadline).await;
        let status = if report.succeeded() {
            "completed"
        } else if report.incomplete() {
            "aborted"
        } else {
            "failed"
        };
        self.report_state(serde_json::json!({
            "status": status,
            "lastResyncStart": started,
            "lastResyncEnd": chrono::Utc::now(),
        }))
        .await;
        report
    }

    /// The resync state on the integration record (the Port API only), as the peer reports it. A
    /// failure is logged: the state is informational and never fails a pass.
    async fn report_state(&self, state: serde_json::Value) {
        let Some(admin) = &self.admin else { return };
        if let Err(e) = admin.patch_resync_state(&state).await {
            tracing::warn!(error = %e, status = %state["status"], "the resync state could not be reported");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(catalog_db: &std::path::Path) -> Settings {
        let db = catalog_db.display().to_string();
        Settings::from_lookup(|k| match k {
            "ADO_ORG_URL" => Some("http://127.0.0.1:9/org".into()),
            "ADO_PAT" => Some("pat".into()),
            "CATALOG_DB" => Some(db.clone()),
            "MAPPING" => Some("resources: []".into()),
            _ => None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_program_on_the_catalog_api_only_refuses_the_embedded_catalog_and_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("catalog.db");
        let refused = Tenant::start_with(settings(&db), Catalogs::API_ONLY)
            .await
            .err()
            .expect("refused");
        assert!(refused.to_string().contains("CATALOG_DB"), "{refused}");
        assert!(!db.exists());
    }

    #[tokio::test]
    async fn the_cli_opens_the_embedded_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("catalog.db");
        let tenant = Tenant::new(settings(&db)).expect("opened");
        assert!(tenant.admin.is_none());
        assert!(db.exists());
    }
}
