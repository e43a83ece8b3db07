//! The Azure DevOps REST client: organisation URLs, auth, paging, rate limits and retries; one module per kind.

mod client;
pub mod hooks;
pub mod ids;
pub mod kinds;
mod paging;
mod url;

pub use client::{AdoClient, AdoClientConfig, ApiVersion, Reply, Request};
pub use ids::{Guid, InvalidId, ProjectName};
pub use url::{OrgUrl, Service};

/// Errors typed by what the caller must do. Cloneable (strings only), so a shared listing that failed
/// once in a pass hands every kind that needs it the same error instead of asking again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdoError {
    /// The PAT was refused (401, or the 203 HTML sign-in page ADO answers for a bad or expired PAT).
    /// Retrying will not help until the credential changes, and no other request can succeed either.
    #[error("Azure DevOps refused the credentials: {0}")]
    Unauthorized(String),
    /// The credential is valid but may not read this resource (403): a missing scope or permission.
    /// Other resources may still be readable.
    #[error("Azure DevOps denied access: {0}")]
    Forbidden(String),
    /// The service does not exist on this server (Azure DevOps Server has no Graph, entitlements or
    /// Advanced Security): the host answers 404 for the whole API. Not a failure of the pass.
    #[error("not available on this server: {0}")]
    NotAvailable(String),
    /// The resource does not exist (404 or 410, or the PAT cannot see it).
    #[error("Azure DevOps has no such resource: {0}")]
    NotFound(String),
    /// The request or the configuration is wrong; the same request will fail again.
    #[error("Azure DevOps rejected the request: {0}")]
    Invalid(String),
    /// Throttling, timeouts, dropped connections or 5xx that outlived the retries: may succeed later.
    #[error("Azure DevOps is unavailable: {0}")]
    Transient(String),
    /// Anything else that will not go away by itself (an unparseable answer, an unexpected status).
    #[error("Azure DevOps failed: {0}")]
    Permanent(String),
    /// The consumer of a stream went away (the pass stopped); not a failure of Azure DevOps.
    #[error("the pass was stopped before this kind finished")]
    Cancelled,
}

impl AdoError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AdoError::Transient(_))
    }
}
