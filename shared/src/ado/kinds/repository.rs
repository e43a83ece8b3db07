//! `repository`: every repository of every (filtered) project, disabled ones included (as the peer does).

use async_trait::async_trait;
use serde_json::Value;

use super::{FetchContext, KindSource, PageSink};
use crate::ado::AdoError;
use crate::mapping::Selector;

pub struct Repository;

#[async_trait]
impl KindSource for Repository {
    fn name(&self) -> &'static str {
        "repository"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let repos = ctx.repositories().await?;
        // One page per project keeps pages the size ADO itself returned.
        let mut page: Vec<Value> = Vec::new();
        let mut current: Option<&str> = None;
        for repo in repos.iter() {
            let project = repo.pointer("/project/id").and_then(Value::as_str);
            if current.is_some() && project != current {
                sink.send(std::mem::take(&mut page)).await?;
            }
            current = project;
            page.push(repo.clone());
        }
        sink.send(page).await
    }
}
