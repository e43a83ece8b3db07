//! `wiki`: the pages of every project and code wiki (filtered by `wikiType`), through `pagesbatch`,
//! whose continuation token comes only in the `x-ms-continuationtoken` header; with `includeContent`,
//! each page is re-read with its content. Items carry `__wiki` (with `__project`) and `__project`.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::parent::{project_request, unless_parent_gone};
use super::{
    FetchContext, Kind, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, SelectorOptions,
    str_field,
};
use crate::ado::{AdoClient, AdoError, ApiVersion, Request};
use crate::mapping::Selector;

pub struct Wiki;

/// Page contents read at once per wiki.
const PAGES_AT_ONCE: usize = 10;

/// `wikiType`, `includeContent` and `apiVersion`.
pub struct Options {
    wiki_type: Option<&'static str>,
    content: bool,
    version: ApiVersion,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["wikiType", "includeContent", "apiVersion"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let wiki_type = match selector
            .str_option("wikiType")?
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => None,
            Some("projectwiki") => Some("projectWiki"),
            Some("codewiki") => Some("codeWiki"),
            Some(other) => {
                return Err(OptionError::new(
                    "wikiType",
                    format!("must be projectWiki or codeWiki, got {other:?}"),
                ));
            }
        };
        Ok(Self {
            wiki_type,
            content: selector.bool_option("includeContent", false)?,
            version: match selector.str_option("apiVersion")? {
                Some(v) => ApiVersion::Exact(v),
                None => ApiVersion::Default,
            },
        })
    }
}

#[async_trait]
impl Kind for Wiki {
    type Options = Options;

    fn name(&self) -> &'static str {
        "wiki"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| {
                async move {
                    let req =
                        Request::get(format!("/{}/_apis/wiki/wikis", str_field(project, "id")))
                            .version(opts.version.clone());
                    // A project without a wiki answers an empty list; a 404 means the project is gone
                    // or something answers for the wiki API that should not, and only the first
                    // leaves nothing to list.
                    let wikis = match ctx.client.send(&req).await {
                        Ok(r) => crate::ado::paging::take_items(r.body, "value"),
                        Err(e) => {
                            let parent = project_request(str_field(project, "id"));
                            return unless_parent_gone(&ctx.client, e, &parent).await;
                        }
                    };
                    for mut wiki in wikis {
                        if opts
                            .wiki_type
                            .is_some_and(|t| str_field(&wiki, "type") != t)
                        {
                            continue;
                        }
                        wiki["__project"] = project.clone();
                        wiki_pages(
                            &ctx.client,
                            project,
                            &wiki,
                            opts.content,
                            &opts.version,
                            sink,
                        )
                        .await?;
                    }
                    Ok(())
                }
            })
            .await
    }
}

/// Every page of one wiki, enriched, page by page into `sink`. Shared with live updates.
pub(crate) async fn wiki_pages(
    client: &AdoClient,
    project: &Value,
    wiki: &Value,
    content: bool,
    version: &ApiVersion,
    sink: &PageSink,
) -> Result<(), AdoError> {
    let base = format!(
        "/{}/_apis/wiki/wikis/{}",
        str_field(project, "id"),
        str_field(wiki, "id")
    );
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "top": PAGE_SIZE });
        if let Some(t) = &token {
            body["continuationToken"] = Value::String(t.clone());
        }
        let req = Request::post(format!("{base}/pagesbatch"), body).version(version.clone());
        let reply = client.send(&req).await?;
        // The header is the only place this API puts its token (a body token would be a different API).
        let next = reply.continuation.filter(|n| Some(n) != token.as_ref());
        let pages = crate::ado::paging::take_items(reply.body, "value");
        let pages: Vec<Value> = if content {
            futures::stream::iter(pages)
                .map(|page| {
                    let base = &base;
                    async move {
                        let req = Request::get(format!("{base}/pages/{}", page["id"]))
                            .query("includeContent", "true")
                            .version(version.clone());
                        match client.send(&req).await {
                            Ok(r) => Ok(r.body),
                            // With its wiki gone the page is gone too: keep what the batch said
                            // (the next pass no longer lists it). A page alone deleted since the
                            // batch fails the kind, as its content cannot be read.
                            Err(e) => {
                                let wiki = Request::get(base.clone()).version(version.clone());
                                unless_parent_gone(client, e, &wiki).await?;
                                Ok(page)
                            }
                        }
                    }
                })
                .buffered(PAGES_AT_ONCE)
                .try_collect()
                .await?
        } else {
            pages
        };
        let page: Vec<Value> = pages
            .into_iter()
            .map(|mut p| {
                p["__wiki"] = wiki.clone();
                p["__project"] = project.clone();
                p
            })
            .collect();
        sink.send(page).await?;
        match next {
            Some(t) => token = Some(t),
            None => return Ok(()),
        }
    }
}
