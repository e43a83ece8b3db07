//! `branch`: every `refs/heads/*` of each healthy repository, with `__repository`; followed live through
//! pushes.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::listing::{healthy_repos, repo_project};
use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::parent::{repository_request, unless_parent_gone};
use super::{Block, FetchContext, Kind, PAGE_SIZE, PageSink, str_field};
use crate::ado::{AdoError, Request};
use crate::queue::message::{Change, ChangeMessage};

/// A push moves, creates and deletes branches.
static BRANCH_EVENTS: [&LiveEvent; 1] = [&super::repository::PUSH];

pub struct Branch;

#[async_trait]
impl Kind for Branch {
    type Options = ();

    fn name(&self) -> &'static str {
        "branch"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        // An empty repository (no commit yet) answers this listing with no refs (200, `count: 0`): it
        // needs no special case. Disabled ones refuse every git read and are not asked at all.
        healthy_repos(ctx, |repo| async move {
            let req = Request::get(format!(
                "/{}/_apis/git/repositories/{}/refs",
                repo_project(&repo),
                str_field(&repo, "id")
            ))
            .query("filter", "heads/");
            let mut pages = ctx
                .client
                .token_pages(req, Some(PAGE_SIZE), "value")
                .boxed();
            loop {
                match pages.try_next().await {
                    Ok(Some(page)) => {
                        let branches = page
                            .iter()
                            .map(|r| {
                                branch_item(
                                    str_field(r, "name"),
                                    r.get("objectId").cloned().unwrap_or(Value::Null),
                                    &repo,
                                )
                            })
                            .collect();
                        sink.send(branches).await?;
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        return unless_parent_gone(&ctx.client, e, &repository_request(&repo))
                            .await;
                    }
                }
            }
        })
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &BRANCH_EVENTS
    }

    /// The branches a push moved, created or deleted.
    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, ()>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Change::Push {
            repository_id,
            ref_updates,
        } = &message.change
        else {
            return Ok(None);
        };
        let Some(project) = cx.project_of(message).await? else {
            return Ok(None);
        };
        let project_id = live::answered_guid(&project, "/id");
        let repo = super::repository::read_one(cx, project_id.as_ref(), repository_id)
            .await
            .map_err(LiveError::ado(format_args!("repository {repository_id}")))?;
        // A removed or disabled repository is the repository kind's business; the resync drops its
        // branches.
        let Some(repo) = repo.filter(super::is_healthy_repo) else {
            return Ok(None);
        };
        let items: Vec<RawItem> = ref_updates
            .iter()
            .filter(|u| u.name.starts_with("refs/heads/"))
            .map(|u| {
                // Deliveries of one repository are applied in order (one FIFO group), so the pushed
                // object id is the branch's current one.
                if u.new_object_id.chars().all(|c| c == '0') {
                    RawItem::Gone(branch_item(&u.name, json!(u.old_object_id), &repo))
                } else {
                    RawItem::Current(branch_item(&u.name, json!(u.new_object_id), &repo))
                }
            })
            .collect();
        Ok(Some(
            blocks
                .iter()
                .flat_map(|b| items.iter().map(move |raw| (b.resource, raw.clone())))
                .collect(),
        ))
    }
}

/// The item the peer synthesises from a ref: `{name, refName, objectId, __repository}`; shared with the
/// live push path so both produce the same entity.
fn branch_item(ref_name: &str, object_id: Value, repo: &Value) -> Value {
    json!({
        "name": ref_name.strip_prefix("refs/heads/").unwrap_or(ref_name),
        "refName": ref_name,
        "objectId": object_id,
        "__repository": repo,
    })
}
