//! `repository`: every repository of every (filtered) project, disabled ones included (as the peer does);
//! with `includedFiles`, `__includedFiles` from each repository's default branch.

use async_trait::async_trait;
use serde_json::Value;

use super::files::{enrich_repositories, included_option};
use super::{FetchContext, KindSource, OptionError, PageSink, option_error};
use crate::ado::AdoError;
use crate::mapping::Selector;

pub struct Repository;

#[async_trait]
impl KindSource for Repository {
    fn name(&self) -> &'static str {
        "repository"
    }

    fn options(&self) -> &'static [&'static str] {
        &["includedFiles"]
    }

    fn check(&self, selector: &Selector) -> Result<(), OptionError> {
        included_option(selector).map_err(OptionError::on("includedFiles"))?;
        Ok(())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let included = included_option(selector).map_err(|e| option_error("repository", e))?;
        let repos = ctx.repositories().await?;
        // One page per project keeps pages the size ADO itself returned.
        let mut page: Vec<Value> = Vec::new();
        let mut current: Option<&str> = None;
        for repo in repos.iter() {
            let project = repo.pointer("/project/id").and_then(Value::as_str);
            if current.is_some() && project != current {
                let mut full = std::mem::take(&mut page);
                enrich_repositories(&ctx.client, &mut full, &included).await?;
                sink.send(full).await?;
            }
            current = project;
            page.push(repo.clone());
        }
        enrich_repositories(&ctx.client, &mut page, &included).await?;
        sink.send(page).await
    }
}
