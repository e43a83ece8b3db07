//! Classic release management, on the release host (vsrm): `release`, `release-definition` and
//! `release-deployment`, each listed per project with continuation tokens. Selector filters are sent
//! exactly as given (lists comma-joined), as the peer does.

use async_trait::async_trait;
use serde_json::Value;

use super::common::{joined, project_pages, put};
use super::{FetchContext, KindSource, OptionError, PAGE_SIZE, PageSink, option_error, str_field};
use crate::ado::{AdoError, Request, Service};
use crate::mapping::Selector;

const STATUSES: &[&str] = &["abandoned", "active", "draft", "undefined"];

struct ReleaseOptions {
    query: Vec<(&'static str, String)>,
}

impl ReleaseOptions {
    fn read(selector: &Selector) -> Result<Self, OptionError> {
        let text = |k: &str| selector.str_option(k);
        let mut query = Vec::new();
        if let Some(e) = text("expand")? {
            query.push(("$expand", e));
        }
        if let Some(s) = text("statusFilter")? {
            if !STATUSES.contains(&s.as_str()) {
                return Err(OptionError::new(
                    "statusFilter",
                    format!("must be one of {}; got {s:?}", STATUSES.join(", ")),
                ));
            }
            query.push(("statusFilter", s));
        }
        let tags = selector.str_list_option("tagFilter")?;
        if let Some(t) = joined(tags) {
            query.push(("tagFilter", t));
        }
        for key in ["sourceBranchFilter", "minCreatedTime", "maxCreatedTime"] {
            if let Some(v) = text(key)? {
                query.push((key, v));
            }
        }
        Ok(Self { query })
    }
}

fn with_query(mut req: Request, query: &[(&'static str, String)]) -> Request {
    for (k, v) in query {
        req = req.query(k, v);
    }
    req
}

pub struct Release;

#[async_trait]
impl KindSource for Release {
    fn name(&self) -> &'static str {
        "release"
    }

    fn options(&self) -> &'static [&'static str] {
        &[
            "expand",
            "statusFilter",
            "tagFilter",
            "sourceBranchFilter",
            "minCreatedTime",
            "maxCreatedTime",
        ]
    }

    fn check(&self, selector: &Selector) -> Result<(), OptionError> {
        ReleaseOptions::read(selector).map(|_| ())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let opts = ReleaseOptions::read(selector).map_err(|e| option_error("release", e))?;
        project_pages(
            ctx,
            sink,
            Some(PAGE_SIZE),
            |p| {
                with_query(
                    Request::get(format!("/{}/_apis/release/releases", str_field(p, "id")))
                        .service(Service::Release),
                    &opts.query,
                )
            },
            |_, _| {},
        )
        .await
    }
}

struct DefinitionOptions {
    expand: String,
    tags: Option<String>,
}

impl DefinitionOptions {
    fn read(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            expand: selector
                .str_option("expand")?
                .unwrap_or_else(|| "environments".to_owned()),
            tags: joined(selector.str_list_option("tagFilter")?),
        })
    }
}

pub struct ReleaseDefinition;

#[async_trait]
impl KindSource for ReleaseDefinition {
    fn name(&self) -> &'static str {
        "release-definition"
    }

    fn options(&self) -> &'static [&'static str] {
        &["expand", "tagFilter"]
    }

    fn check(&self, selector: &Selector) -> Result<(), OptionError> {
        DefinitionOptions::read(selector).map(|_| ())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let opts =
            DefinitionOptions::read(selector).map_err(|e| option_error("release-definition", e))?;
        project_pages(
            ctx,
            sink,
            Some(PAGE_SIZE),
            |p| {
                let mut req =
                    Request::get(format!("/{}/_apis/release/definitions", str_field(p, "id")))
                        .service(Service::Release)
                        .query("$expand", &opts.expand);
                if let Some(t) = &opts.tags {
                    req = req.query("tagFilter", t);
                }
                req
            },
            enrich_definition,
        )
        .await
    }
}

/// `__project`, as the peer adds it; shared with the live read.
pub(crate) fn enrich_definition(item: &mut Value, project: &Value) {
    put(item, "__project", project.clone());
}

pub struct ReleaseDeployment;

#[async_trait]
impl KindSource for ReleaseDeployment {
    fn name(&self) -> &'static str {
        "release-deployment"
    }

    /// `includeRelease` is in the peer's example mappings but reads nothing there either (a deployment
    /// carries its release); accepted so those mappings compile.
    fn options(&self) -> &'static [&'static str] {
        &["includeRelease"]
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        project_pages(
            ctx,
            sink,
            Some(PAGE_SIZE),
            |p| {
                Request::get(format!("/{}/_apis/release/deployments", str_field(p, "id")))
                    .service(Service::Release)
            },
            |_, _| {},
        )
        .await
    }
}

/// A release read by id, shaped and filtered as the block's listing would have returned it: the single
/// GET always carries `environments` and `artifacts`, the list only when `expand` asks; a release outside
/// the block's `statusFilter` or `tagFilter` is `None` (the listing would not return it).
pub(crate) fn release_as_listed(release: &Value, selector: &Selector) -> Option<Value> {
    let text = |k: &str| selector.str_option(k).ok().flatten();
    if let Some(status) = text("statusFilter")
        && status != "undefined"
        && release.get("status").and_then(Value::as_str) != Some(status.as_str())
    {
        return None;
    }
    let tags = selector.str_list_option("tagFilter").unwrap_or_default();
    let has = |t: &String| {
        release
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(t.trim())))
    };
    if !tags.iter().filter(|t| !t.trim().is_empty()).all(has) {
        return None;
    }
    let expand = text("expand").unwrap_or_default().to_ascii_lowercase();
    let mut listed = release.clone();
    if let Value::Object(map) = &mut listed {
        for key in ["environments", "artifacts"] {
            if !expand.split(',').any(|e| e.trim() == key) {
                map.remove(key);
            }
        }
    }
    Some(listed)
}
