//! `repository-policy`: the branch policies of each healthy repository's default branch, with
//! `__repository`.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::listing::{healthy_repos, put, repo_project};
use super::{FetchContext, Kind, PAGE_SIZE, PageSink, str_field};
use crate::ado::{AdoError, ApiVersion, Request};

pub struct RepositoryPolicy;

#[async_trait]
impl Kind for RepositoryPolicy {
    type Options = ();

    fn name(&self) -> &'static str {
        "repository-policy"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        healthy_repos(ctx, |repo| async move {
            // Git policy configurations are a preview API (7.1-preview.1; 7.0-preview.1 on Server).
            let mut req = Request::get(format!(
                "/{}/_apis/git/policy/configurations",
                repo_project(&repo)
            ))
            .version(ApiVersion::Preview(1))
            .query("repositoryId", str_field(&repo, "id"));
            if let Some(branch) = repo.get("defaultBranch").and_then(Value::as_str) {
                req = req.query("refName", branch);
            }
            let mut pages = ctx
                .client
                .token_pages(req, Some(PAGE_SIZE), "value")
                .boxed();
            while let Some(mut page) = pages.try_next().await? {
                for policy in &mut page {
                    put(policy, "__repository", repo.clone());
                }
                sink.send(page).await?;
            }
            Ok(())
        })
        .await
    }
}
