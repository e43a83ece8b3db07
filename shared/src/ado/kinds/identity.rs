//! Identity kinds, served by the Graph (vssps) and Member Entitlement Management (vsaex) hosts:
//! `user` (entitlements by default, or Graph users with optional group memberships), `group` and
//! `group-member` (direct members of each group, resolved through subject lookup in batches of 500).

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::parent::unless_parent_gone;
use super::{FetchContext, Kind, OptionError, PAGE_SIZE, PageSink, SelectorOptions, str_field};
use crate::ado::{AdoClient, AdoError, ApiVersion, Request, Service};
use crate::mapping::Selector;

pub struct User;
pub struct Group;
pub struct GroupMember;

/// Subject lookup takes at most this many descriptors per call.
const LOOKUP_BATCH: usize = 500;
/// Users whose memberships are read at once.
const USERS_AT_ONCE: usize = 10;

/// Where `user` reads from (`source`), with that source's options: the kind's options.
#[derive(Debug, PartialEq)]
pub enum Source {
    Entitlements {
        select: Option<String>,
        api_version: Option<String>,
    },
    Graph {
        subject_types: Option<String>,
        memberships: bool,
    },
}

const FIELDS: &[&str] = &["license", "extensions", "projects", "groupRules"];

impl SelectorOptions for Source {
    const NAMES: &'static [&'static str] = &[
        "source",
        "subjectTypes",
        "includeGroupMemberships",
        "includeFields",
        "apiVersion",
    ];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        read_source(selector)
    }
}

fn read_source(selector: &Selector) -> Result<Source, OptionError> {
    let source = selector.str_option("source")?;
    match source.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("entitlements") => {
            let fields = selector.str_list_option("includeFields")?;
            for f in &fields {
                if !FIELDS.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                    return Err(OptionError::new(
                        "includeFields",
                        format!("{f:?} is not one of {}", FIELDS.join(", ")),
                    ));
                }
            }
            let api_version = selector.str_option("apiVersion")?;
            if let Some(v) = &api_version
                && major(v).is_none()
            {
                return Err(OptionError::new(
                    "apiVersion",
                    format!("{v:?} is not an api-version like 7.1"),
                ));
            }
            Ok(Source::Entitlements {
                select: (!fields.is_empty()).then(|| fields.join(",")),
                api_version,
            })
        }
        Some("graph") => Ok(Source::Graph {
            subject_types: Some(selector.str_list_option("subjectTypes")?)
                .filter(|t| !t.is_empty())
                .map(|t| t.join(",")),
            memberships: selector.bool_option("includeGroupMemberships", false)?,
        }),
        Some(other) => Err(OptionError::new(
            "source",
            format!("must be entitlements or graph, got {other:?}"),
        )),
    }
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

#[async_trait]
impl Kind for User {
    type Options = Source;

    fn name(&self) -> &'static str {
        "user"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        source: &Source,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        match source {
            Source::Entitlements {
                select,
                api_version,
            } => entitlements(ctx, select.clone(), api_version.clone(), sink).await,
            Source::Graph {
                subject_types,
                memberships,
            } => graph_users(ctx, subject_types.clone(), *memberships, sink).await,
        }
    }
}

async fn entitlements(
    ctx: &FetchContext,
    select: Option<String>,
    api_version: Option<String>,
    sink: &PageSink,
) -> Result<(), AdoError> {
    // 7.x returns `{items, continuationToken}`; the older releases paged with `top`/`skip` and `members`.
    let legacy = api_version
        .as_deref()
        .and_then(major)
        .is_some_and(|m| m < 7);
    let version = match api_version {
        Some(v) => ApiVersion::Exact(v),
        None => ApiVersion::Preview(3),
    };
    let mut req = Request::get("/_apis/userentitlements")
        .service(Service::Entitlement)
        .version(version);
    if let Some(s) = select {
        req = req.query("select", s);
    }
    let api = "Member Entitlement Management";
    if legacy {
        let mut skip = 0usize;
        loop {
            let r = req.clone().query("top", PAGE_SIZE).query("skip", skip);
            let body = ctx
                .services_only(ctx.client.send(&r).await, "user", api)
                .await?
                .body;
            let page = match body.get("members") {
                Some(_) => crate::ado::paging::take_items(body, "members"),
                None => crate::ado::paging::take_items(body, "value"),
            };
            let n = page.len();
            sink.send(page).await?;
            if n < PAGE_SIZE as usize {
                return Ok(());
            }
            skip += n;
        }
    }
    let mut pages = ctx.client.token_pages(req, None, "items").boxed();
    while let Some(page) = ctx
        .services_only(pages.try_next().await, "user", api)
        .await?
    {
        sink.send(page).await?;
    }
    Ok(())
}

async fn graph_users(
    ctx: &FetchContext,
    subject_types: Option<String>,
    memberships: bool,
    sink: &PageSink,
) -> Result<(), AdoError> {
    let mut req = Request::get("/_apis/graph/users")
        .service(Service::Identity)
        .version(ApiVersion::Preview(1));
    if let Some(t) = subject_types {
        req = req.query("subjectTypes", t);
    }
    let mut pages = ctx.client.token_pages(req, None, "value").boxed();
    while let Some(page) = ctx
        .services_only(pages.try_next().await, "user", "Graph")
        .await?
    {
        if !memberships {
            sink.send(page).await?;
            continue;
        }
        let page: Vec<Value> = futures::stream::iter(page)
            .map(|mut user| async move {
                let groups = groups_of(&ctx.client, str_field(&user, "descriptor")).await?;
                let projects: BTreeSet<String> = groups
                    .iter()
                    .filter(|g| is_project_group(g))
                    .filter_map(|g| project_of_principal(str_field(g, "principalName")))
                    .collect();
                user["__groups"] = Value::Array(groups);
                user["__projects"] = json!(projects);
                Ok::<_, AdoError>(user)
            })
            .buffered(USERS_AT_ONCE)
            .try_collect()
            .await?;
        sink.send(page).await?;
    }
    Ok(())
}

/// Collection-level groups are also named `[org]\Group`; only project groups name a project.
fn is_project_group(group: &Value) -> bool {
    let domain = str_field(group, "domain");
    domain.is_empty() || domain.contains("Classification/TeamProject")
}

/// `[Project]\Group` → `Project`.
fn project_of_principal(principal: &str) -> Option<String> {
    let rest = principal.strip_prefix('[')?;
    let (project, _) = rest.split_once("]\\")?;
    Some(project.to_owned())
}

/// The groups a user directly belongs to, as full group subjects.
async fn groups_of(client: &AdoClient, descriptor: &str) -> Result<Vec<Value>, AdoError> {
    if descriptor.is_empty() {
        return Ok(Vec::new());
    }
    let containers: Vec<String> = memberships(client, descriptor, Direction::UpFromUser)
        .await?
        .iter()
        .map(|m| str_field(m, "containerDescriptor").to_owned())
        .collect();
    lookup(client, &containers).await
}

/// Which way [`memberships`] looks from a subject, and the subject's own GET (its parent listing).
#[derive(Clone, Copy)]
enum Direction {
    /// The groups a user belongs to.
    UpFromUser,
    /// The members of a group.
    DownFromGroup,
}

async fn memberships(
    client: &AdoClient,
    descriptor: &str,
    direction: Direction,
) -> Result<Vec<Value>, AdoError> {
    let (way, subjects) = match direction {
        Direction::UpFromUser => ("up", "users"),
        Direction::DownFromGroup => ("down", "groups"),
    };
    let req = Request::get(format!("/_apis/graph/memberships/{descriptor}"))
        .service(Service::Identity)
        .version(ApiVersion::Preview(1))
        .query("direction", way);
    match client.send(&req).await {
        Ok(reply) => Ok(crate::ado::paging::take_items(reply.body, "value")),
        Err(e) => {
            let subject = Request::get(format!("/_apis/graph/{subjects}/{descriptor}"))
                .service(Service::Identity)
                .version(ApiVersion::Preview(1));
            unless_parent_gone(client, e, &subject).await?;
            Ok(Vec::new())
        }
    }
}

/// Subjects by descriptor, in request order, batches of [`LOOKUP_BATCH`]; unknown descriptors are left out.
async fn lookup(client: &AdoClient, descriptors: &[String]) -> Result<Vec<Value>, AdoError> {
    let mut out = Vec::with_capacity(descriptors.len());
    for batch in descriptors.chunks(LOOKUP_BATCH) {
        let body = json!({
            "lookupKeys": batch.iter().map(|d| json!({"descriptor": d})).collect::<Vec<_>>()
        });
        let req = Request::post("/_apis/graph/subjectlookup", body)
            .service(Service::Identity)
            .version(ApiVersion::Preview(1));
        let found = client.send(&req).await?.body;
        let found = found.get("value").cloned().unwrap_or(Value::Null);
        out.extend(batch.iter().filter_map(|d| found.get(d).cloned()));
    }
    Ok(out)
}

#[async_trait]
impl Kind for Group {
    type Options = ();

    fn name(&self) -> &'static str {
        "group"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let groups = ctx.groups().await?;
        for chunk in groups.chunks(PAGE_SIZE as usize) {
            sink.send(chunk.to_vec()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Kind for GroupMember {
    type Options = ();

    fn name(&self) -> &'static str {
        "group-member"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let groups = ctx.groups().await?;
        for group in groups.iter() {
            let members: Vec<String> = memberships(
                &ctx.client,
                str_field(group, "descriptor"),
                Direction::DownFromGroup,
            )
            .await?
            .iter()
            .map(|m| str_field(m, "memberDescriptor").to_owned())
            .collect();
            for batch in members.chunks(LOOKUP_BATCH) {
                let mut subjects = lookup(&ctx.client, batch).await?;
                for s in &mut subjects {
                    s["__group"] = group.clone();
                }
                sink.send(subjects).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::PortAppConfig;

    fn selector(options: &str) -> Selector {
        let yaml = format!(
            "resources:\n  - kind: user\n    selector:\n      query: 'true'\n{options}    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"u\"'\n"
        );
        PortAppConfig::parse(&yaml).unwrap().resources[0]
            .selector
            .clone()
    }

    #[test]
    fn the_user_source_follows_the_selector() {
        assert_eq!(
            read_source(&selector("")).unwrap(),
            Source::Entitlements {
                select: None,
                api_version: None
            }
        );
        assert_eq!(
            read_source(&selector(
                "      includeFields: [license, projects]\n      apiVersion: '6.0-preview.3'\n"
            ))
            .unwrap(),
            Source::Entitlements {
                select: Some("license,projects".into()),
                api_version: Some("6.0-preview.3".into())
            }
        );
        assert_eq!(
            read_source(&selector(
                "      source: graph\n      subjectTypes: [aad, msa]\n      includeGroupMemberships: true\n"
            ))
            .unwrap(),
            Source::Graph {
                subject_types: Some("aad,msa".into()),
                memberships: true
            }
        );
        assert!(read_source(&selector("      source: ldap\n")).is_err());
        assert!(read_source(&selector("      includeFields: [salary]\n")).is_err());
    }

    #[test]
    fn project_names_come_from_group_principal_names() {
        assert_eq!(
            project_of_principal("[Mobile App]\\Contributors").as_deref(),
            Some("Mobile App")
        );
        assert_eq!(project_of_principal("Contributors"), None);
    }
}
