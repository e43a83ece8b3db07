//! The Azure DevOps REST client: organisation URLs, auth, paging, rate limits and retries; one module per kind.

mod client;
pub mod entra;
pub mod hooks;
pub mod ids;
pub mod kinds;
mod paging;
mod url;

pub use client::{AdoClient, AdoClientConfig, ApiVersion, Reply, Request};
pub use ids::{Guid, InvalidId, ProjectName};
pub use url::{OrgUrl, Service};

pub use crate::failure::{Failure, Route};

/// Errors typed by what the caller must do. Each carries the [`Failure`]: the request, status,
/// `Retry-After`, an excerpt of the answer and the underlying error. Cloneable (the cause is shared), so a
/// shared listing that failed once in a pass hands every kind that needs it the same error instead of
/// asking again.
#[derive(Debug, Clone, PartialEq)]
pub enum AdoError {
    /// The PAT was refused (401, or the 203 HTML sign-in page ADO answers for a bad or expired PAT).
    /// Retrying will not help until the credential changes, and no other request can succeed either.
    Unauthorized(Failure),
    /// The credential is valid but may not read this resource (403): a missing scope or permission.
    /// Other resources may still be readable.
    Forbidden(Failure),
    /// The service does not exist on this server (Azure DevOps Server has no Graph, entitlements or
    /// Advanced Security): the host answers 404 for the whole API. Not a failure of the pass.
    NotAvailable(Failure),
    /// The resource does not exist (404 or 410, or the PAT cannot see it).
    NotFound(Failure),
    /// The request or the configuration is wrong; the same request will fail again.
    Invalid(Failure),
    /// Throttling, timeouts, dropped connections or 5xx that outlived the retries: may succeed later.
    Transient(Failure),
    /// Anything else that will not go away by itself (an unparseable answer, an unexpected status).
    Permanent(Failure),
    /// The consumer of a stream went away (the pass stopped); not a failure of Azure DevOps.
    Cancelled,
}

impl AdoError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AdoError::Transient(_))
    }

    /// The detail of the failure; `None` only for [`AdoError::Cancelled`].
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            AdoError::Unauthorized(f)
            | AdoError::Forbidden(f)
            | AdoError::NotAvailable(f)
            | AdoError::NotFound(f)
            | AdoError::Invalid(f)
            | AdoError::Transient(f)
            | AdoError::Permanent(f) => Some(f),
            AdoError::Cancelled => None,
        }
    }

    /// A request that is not repeatable ([`Request::post_once`]) failed in a way that leaves open
    /// whether Azure DevOps carried it out (a timeout, a 5xx).
    pub fn may_have_been_carried_out(&self) -> bool {
        matches!(self, AdoError::Transient(f) if f.mentions(client::NOT_REPEATED))
    }

    /// The HTTP status Azure DevOps answered with, when a request got that far.
    pub fn status(&self) -> Option<u16> {
        self.failure().and_then(Failure::status)
    }

    /// The request that failed, when one did.
    pub fn route(&self) -> Option<&Route> {
        self.failure().and_then(Failure::route)
    }

    /// The wait Azure DevOps asked for (`Retry-After` or the rate-limit reset), when it asked.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.failure().and_then(Failure::retry_after)
    }

    /// The same kind of error with what was being done in front: callers act on the kind (a refused
    /// credential stops the pass), people on the text.
    pub fn context(self, context: impl Into<String>) -> Self {
        self.map_failure(|f| f.with_context(context))
    }

    /// The same kind of error with its failure changed.
    pub fn map_failure(self, f: impl FnOnce(Failure) -> Failure) -> Self {
        match self {
            AdoError::Unauthorized(x) => AdoError::Unauthorized(f(x)),
            AdoError::Forbidden(x) => AdoError::Forbidden(f(x)),
            AdoError::NotAvailable(x) => AdoError::NotAvailable(f(x)),
            AdoError::NotFound(x) => AdoError::NotFound(f(x)),
            AdoError::Invalid(x) => AdoError::Invalid(f(x)),
            AdoError::Transient(x) => AdoError::Transient(f(x)),
            AdoError::Permanent(x) => AdoError::Permanent(f(x)),
            AdoError::Cancelled => AdoError::Cancelled,
        }
    }

    /// A request or setting that is wrong, described in words.
    pub fn invalid(detail: impl Into<String>) -> Self {
        AdoError::Invalid(Failure::new(detail))
    }

    /// An answer that cannot be used, described in words.
    pub fn permanent(detail: impl Into<String>) -> Self {
        AdoError::Permanent(Failure::new(detail))
    }

    /// A service this server does not have, described in words.
    pub fn not_available(detail: impl Into<String>) -> Self {
        AdoError::NotAvailable(Failure::new(detail))
    }
}

impl std::fmt::Display for AdoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, failure) = match self {
            AdoError::Unauthorized(x) => ("Azure DevOps refused the credentials", x),
            AdoError::Forbidden(x) => ("Azure DevOps denied access", x),
            AdoError::NotAvailable(x) => ("not available on this server", x),
            AdoError::NotFound(x) => ("Azure DevOps has no such resource", x),
            AdoError::Invalid(x) => ("Azure DevOps rejected the request", x),
            AdoError::Transient(x) => ("Azure DevOps is unavailable", x),
            AdoError::Permanent(x) => ("Azure DevOps failed", x),
            AdoError::Cancelled => {
                return f.write_str("the pass was stopped before this kind finished");
            }
        };
        write!(f, "{what}: {failure}")
    }
}

/// The source is the failure's cause (a transport or parse error); the failure itself is part of the
/// message, so a chain printer does not repeat the request.
impl std::error::Error for AdoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure()?.cause().map(|c| c as _)
    }
}
