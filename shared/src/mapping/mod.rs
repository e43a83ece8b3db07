//! The `port-app-config` model and the jq mapping engine (jaq): compile once, evaluate per item.
//!
//! - [`PortAppConfig`]: the configuration users bring, parsed and validated like Port's Ocean does.
//! - [`CompiledConfig`]: every jq expression compiled once; [`CompiledResource::map_item`] turns one
//!   raw Azure DevOps item into [`ItemOutcome`]s with Ocean's semantics (first output, null plus a
//!   warning on failure, Python truthiness for identifier and blueprint, itemsToParse expansion).

mod config;
mod engine;
mod fast;
mod items;
mod jq;
mod prelude;
mod projection;
mod quotes;
mod regex_cache;
pub mod source;

pub use config::{
    EntityMappingConfig, MappingNode, PortAppConfig, PortResourceConfig, ResourceConfig,
    SearchQuery, SearchRule, Selector,
};
pub use engine::{CompiledConfig, CompiledResource, ParseOptions, ParsedOptions};
pub use projection::Projection;
pub use quotes::rewrite_single_quotes;

use crate::catalog::Entity;

/// Engine options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingOptions {
    /// Lets mappings read the process environment through `env` / `$ENV`. Off by default: a Lambda's
    /// environment holds secrets, and a mapping is user-supplied text.
    pub allow_env: bool,
}

/// What mapping one (possibly expanded) item produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Mapped {
        entity: Entity,
        warnings: Vec<FieldWarning>,
    },
    /// The selector returned `false`. The entity is mapped only when the caller asked for filtered
    /// items (live events: a filtered item is a delete candidate).
    Filtered { entity: Option<Entity> },
    /// Identifier or blueprint evaluated falsy (null, "", 0, false, [], {}): not an error, not an entity.
    Dropped { warnings: Vec<FieldWarning> },
    /// The selector returned a non-boolean, nothing, or failed: an item error, which must block the
    /// stale-entity deletion of the resync.
    SelectorError { message: String },
    /// itemsToParse did not give an array, or its array could not be removed from the parent: a warning.
    ParentSkipped { message: String },
}

/// A mapping field that failed (runtime error or no output) and was set to null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldWarning {
    /// Path inside the mapping, e.g. `properties.url` or `identifier.rules[0].value`.
    pub field: String,
    /// The jq expression as written in the config.
    pub expression: String,
    pub message: String,
}

/// Errors of the mapping configuration; all of them mean "fix the config".
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping config is not valid YAML or JSON: {0}")]
    Parse(#[source] Box<serde_saphyr::Error>),
    #[error("mapping config is invalid at {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{path}: jq does not compile: {message}")]
    Compile { path: String, message: String },
}
