//! Paging, as streams of pages: continuation tokens (header or body) and `$top`/`$skip`.
//! A page is yielded before the next is requested, so nothing is collected whole.

use futures::Stream;
use serde_json::Value;

use super::{AdoClient, AdoError, Request};

impl AdoClient {
    /// Pages of a continuation-token API. The token comes in the `x-ms-continuationtoken` header on most
    /// APIs and as `continuationToken` in the body on some: reading only one silently stops after page 1.
    pub fn token_pages(
        &self,
        req: Request,
        page_size: Option<u32>,
        data_key: &'static str,
    ) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + Send + 'static {
        let client = self.clone();
        futures::stream::try_unfold(Some(None::<String>), move |state| {
            let client = client.clone();
            let req = req.clone();
            async move {
                let Some(token) = state else { return Ok(None) };
                let mut r = req;
                if let Some(top) = page_size {
                    r = r.query("$top", top);
                }
                if let Some(t) = &token {
                    r = r.query("continuationToken", t);
                }
                let reply = client.send(&r).await?;
                let next = reply.continuation.clone().or_else(|| {
                    reply
                        .body
                        .get("continuationToken")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                });
                // A server that hands back the token it was given would loop forever.
                let next = next.filter(|n| Some(n) != token.as_ref());
                let page = take_items(reply.body, data_key);
                Ok(Some((page, next.map(Some))))
            }
        })
    }

    /// Pages of a `$top`/`$skip` API, stopping at a short page or after `cap` items.
    pub fn top_skip_pages(
        &self,
        req: Request,
        page_size: u32,
        cap: Option<usize>,
    ) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + Send + 'static {
        let client = self.clone();
        futures::stream::try_unfold(Some(0usize), move |state| {
            let client = client.clone();
            let req = req.clone();
            async move {
                let Some(skip) = state else { return Ok(None) };
                let top = match cap {
                    Some(cap) if cap <= skip => return Ok(None),
                    Some(cap) => (cap - skip).min(page_size as usize),
                    None => page_size as usize,
                };
                let r = req.query("$top", top).query("$skip", skip);
                let reply = client.send(&r).await?;
                let page = take_items(reply.body, "value");
                let next = (page.len() >= top && top > 0).then_some(skip + page.len());
                Ok(Some((page, next)))
            }
        })
    }
}

/// The list in a page body (`value`, or `items` for some APIs). A body that is itself a list is taken whole.
pub(crate) fn take_items(body: Value, key: &str) -> Vec<Value> {
    match body {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove(key) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}
