//! The Azure DevOps REST client: organisation URLs, auth, paging, rate limits and retries; one module per kind.
