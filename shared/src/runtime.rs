//! Builds what a pass needs from [`Settings`], once per process (a Lambda cold start, a CLI run): the ADO
//! client, the catalog adapter and the compiled mapping. Everything that can be wrong in configuration
//! fails here, before any call.

use std::sync::Arc;
use std::time::Duration;

use crate::ado::{AdoClient, AdoError};
use crate::catalog::embedded::EmbeddedCatalog;
use crate::catalog::port::{PortClient, PortConfig};
use crate::catalog::{Catalog, CatalogError};
use crate::config::{CatalogTarget, Settings};
use crate::mapping::{CompiledConfig, MappingError, MappingOptions, PortAppConfig};
use crate::resync::{Observer, Resync, RunReport};

/// The integration type in the catalog's ownership tag: the same as the Python peer's, so entities it
/// created are ours when the integration identifier matches.
pub const INTEGRATION_TYPE: &str = "azure-devops";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The shipped default mapping and blueprints, used when no `MAPPING_FILE` is given.
pub const DEFAULT_MAPPING: &str = include_str!("../defaults/port-app-config.yaml");
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

/// Loads and compiles the mapping: `MAPPING_FILE` if set, else the shipped default.
pub fn load_mapping(settings: &Settings) -> Result<CompiledConfig, SetupError> {
    let (origin, text) = match &settings.mapping_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SetupError::MappingFile {
                path: path.display().to_string(),
                source,
            })?;
            (path.display().to_string(), text)
        }
        None => ("the default mapping".to_owned(), DEFAULT_MAPPING.to_owned()),
    };
    compile_mapping(&text, &origin, settings.mapping_allow_env)
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
    CompiledConfig::compile(config, &MappingOptions { allow_env }).map_err(wrap)
}

/// Opens the configured catalog adapter.
pub fn open_catalog(settings: &Settings) -> Result<Arc<dyn Catalog>, SetupError> {
    let datasource =
        crate::catalog::datasource(INTEGRATION_TYPE, VERSION, &settings.integration_identifier);
    Ok(match &settings.catalog {
        CatalogTarget::Embedded { path } => Arc::new(EmbeddedCatalog::open(path, datasource)?),
        CatalogTarget::Port {
            base_url,
            client_id,
            client_secret,
        } => Arc::new(PortClient::new(PortConfig {
            base_url: base_url.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            integration_identifier: settings.integration_identifier.clone(),
            integration_type: INTEGRATION_TYPE.to_owned(),
            version: VERSION.to_owned(),
            timeout: Duration::from_secs(60),
            max_retries: 5,
        })?),
    })
}

/// Everything a resync needs, built once.
pub struct SyncRuntime {
    pub settings: Settings,
    pub ado: AdoClient,
    pub catalog: Arc<dyn Catalog>,
    pub mapping: CompiledConfig,
}

impl SyncRuntime {
    pub fn new(settings: Settings) -> Result<Self, SetupError> {
        let mapping = load_mapping(&settings)?;
        Self::with_mapping(settings, mapping)
    }

    pub fn with_mapping(settings: Settings, mapping: CompiledConfig) -> Result<Self, SetupError> {
        let ado = AdoClient::new(settings.ado.clone())?;
        let catalog = open_catalog(&settings)?;
        Ok(Self {
            settings,
            ado,
            catalog,
            mapping,
        })
    }

    pub async fn resync(&self, observer: &dyn Observer) -> RunReport {
        Resync {
            ado: &self.ado,
            catalog: self.catalog.as_ref(),
            mapping: &self.mapping,
            excluded_tags: self.settings.excluded_tags.clone(),
            observer,
        }
        .run()
        .await
    }
}
