//! What a failed remote call knows about itself: the request (method and path), the HTTP status, the
//! wait the server asked for, a short excerpt of its answer and the underlying error. Azure DevOps and
//! catalog errors carry one, so callers act on fields instead of parsing text, and the text names the
//! request exactly once.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The longest answer excerpt kept, in characters: enough for an error message, short enough for logs.
pub const BODY_EXCERPT_CHARS: usize = 300;

/// A request as errors name it: the method and the path. Never the query string, which may carry
/// continuation tokens or filters nobody needs in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
}

impl Route {
    /// `path` may be a full path with a query string; only the part before `?` is kept.
    pub fn new(method: impl fmt::Display, path: &str) -> Self {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        Self {
            method: method.to_string(),
            path: path.to_owned(),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The error underneath a failure (a transport error, an unparseable answer). Shared, so the errors
/// that hold it stay cloneable: a listing that failed once hands every kind the same error.
pub type Cause = Arc<dyn StdError + Send + Sync + 'static>;

/// The typed detail of one failure. Rendered as
/// `context: METHOD /path: HTTP status: detail: body excerpt: cause`, each part only when known.
#[derive(Clone, Default)]
pub struct Failure {
    // Boxed: errors travel in every `Result` of the clients, and the detail is rarely needed.
    d: Box<Detail>,
}

#[derive(Clone, Default)]
struct Detail {
    /// What the caller was doing, outermost first.
    context: Vec<String>,
    route: Option<Route>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    /// Our own words for what went wrong, when the status and body do not say it.
    detail: Option<String>,
    /// The start of the server's answer (its `message` when it has one).
    body: Option<String>,
    source: Option<Cause>,
}

impl Failure {
    /// A failure described in words only (a bad setting, an answer missing a field).
    pub fn new(detail: impl Into<String>) -> Self {
        let mut f = Self::default();
        f.d.detail = Some(detail.into());
        f
    }

    /// A failure whose underlying error says it all (a local store, a parse error).
    pub fn from_source(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::default().with_source(source)
    }

    /// A failure of one request; add the status, body and cause with the builder methods.
    pub fn request(route: Route) -> Self {
        let mut f = Self::default();
        f.d.route = Some(route);
        f
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.d.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.d.retry_after = wait;
        self
    }

    /// Sets the answer excerpt: shortened to [`BODY_EXCERPT_CHARS`]; an empty one is left out.
    pub fn with_body(mut self, body: impl AsRef<str>) -> Self {
        let body = body.as_ref().trim();
        if !body.is_empty() {
            self.d.body = Some(excerpt(body));
        }
        self
    }

    /// Adds our words for what went wrong; a second call appends to the first.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        self.d.detail = Some(match self.d.detail.take() {
            Some(first) => format!("{first}; {detail}"),
            None => detail,
        });
        self
    }

    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.d.source = Some(Arc::new(source));
        self
    }

    /// Puts what the caller was doing in front. A request already named stays named once.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.d.context.insert(0, context.into());
        self
    }

    pub fn route(&self) -> Option<&Route> {
        self.d.route.as_ref()
    }

    pub fn status(&self) -> Option<u16> {
        self.d.status
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.d.retry_after
    }

    pub fn detail(&self) -> Option<&str> {
        self.d.detail.as_deref()
    }

    pub fn body(&self) -> Option<&str> {
        self.d.body.as_deref()
    }

    pub fn context(&self) -> &[String] {
        &self.d.context
    }

    /// The underlying error, if there is one.
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.d.source.as_deref()
    }

    /// True when the detail or the answer mentions `needle` (case-insensitive): for the few callers
    /// that tell apart answers sharing one status by what the server said.
    pub fn mentions(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        [self.d.detail.as_deref(), self.d.body.as_deref()]
            .into_iter()
            .flatten()
            .any(|s| s.to_ascii_lowercase().contains(&needle))
    }
}

impl From<String> for Failure {
    fn from(detail: String) -> Self {
        Self::new(detail)
    }
}

impl From<&str> for Failure {
    fn from(detail: &str) -> Self {
        Self::new(detail)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut part = |f: &mut fmt::Formatter<'_>, p: &dyn fmt::Display| {
            let sep = if first { "" } else { ": " };
            first = false;
            write!(f, "{sep}{p}")
        };
        for c in &self.d.context {
            part(f, c)?;
        }
        if let Some(route) = &self.d.route {
            part(f, route)?;
        }
        if let Some(status) = self.d.status {
            part(f, &format_args!("HTTP {status}"))?;
        }
        if let Some(detail) = &self.d.detail {
            part(f, detail)?;
        }
        if let Some(body) = &self.d.body {
            part(f, body)?;
        }
        // The whole chain of the cause: reqwest keeps the useful part ("operation timed out") in its
        // sources, not in its own message. A source its parent already quotes is not repeated.
        let mut cause: Option<&(dyn StdError + 'static)> = self.d.source.as_deref().map(|e| e as _);
        let mut last = String::new();
        while let Some(e) = cause {
            let text = e.to_string();
            if !last.contains(&text) {
                part(f, &text)?;
            }
            last = text;
            cause = e.source();
        }
        if first {
            f.write_str("no detail")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Failure");
        if !self.d.context.is_empty() {
            d.field("context", &self.d.context);
        }
        if let Some(route) = &self.d.route {
            d.field("route", &format_args!("{route}"));
        }
        if let Some(status) = self.d.status {
            d.field("status", &status);
        }
        if let Some(wait) = self.d.retry_after {
            d.field("retry_after", &wait);
        }
        if let Some(detail) = &self.d.detail {
            d.field("detail", detail);
        }
        if let Some(body) = &self.d.body {
            d.field("body", body);
        }
        if let Some(source) = &self.d.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl PartialEq for Failure {
    /// Equal when they read the same: the cause is compared by its text.
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
            && self.d.status == other.d.status
            && self.d.route == other.d.route
    }
}

/// The first [`BODY_EXCERPT_CHARS`] characters, with `…` when cut.
pub fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(BODY_EXCERPT_CHARS).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_request_renders_route_status_detail_and_body_in_order() {
        let f = Failure::request(Route::new(
            "GET",
            "/p/_apis/git/repositories?continuationToken=x",
        ))
        .with_status(429)
        .with_body("Too many requests")
        .with_detail("gave up after 3 retries")
        .with_context("listing repositories");
        assert_eq!(
            f.to_string(),
            "listing repositories: GET /p/_apis/git/repositories: HTTP 429: gave up after 3 retries: Too many requests"
        );
        assert_eq!(f.status(), Some(429));
        assert_eq!(f.route().unwrap().path, "/p/_apis/git/repositories");
    }

    #[test]
    fn the_cause_chain_is_rendered_and_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "operation timed out");
        let f = Failure::request(Route::new("POST", "/x"))
            .with_detail("transport error")
            .with_source(io);
        assert_eq!(
            f.to_string(),
            "POST /x: transport error: operation timed out"
        );
        assert!(f.cause().is_some());
    }

    #[test]
    fn a_source_its_parent_quotes_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("catalog database failed: {0}")]
        struct Outer(#[from] std::io::Error);
        let inner = std::io::Error::other("disk full");
        let f = Failure::from_source(Outer(inner));
        assert_eq!(f.to_string(), "catalog database failed: disk full");
    }

    #[test]
    fn long_bodies_are_cut() {
        let f = Failure::new("x").with_body("a".repeat(1000));
        assert_eq!(f.body().unwrap().chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(f.mentions("AAA"));
    }
}
