//! The kinds a change refreshes besides its main one: a completed build or a run's state change refreshes
//! the build, its run, its stages and its test runs; a release event its release, definition and
//! deployment; an alert event the alert; a push the branches it moved. Each kind is read only when the
//! mapping has a resource of that kind, and once for all of that kind's resource blocks unless a block's
//! options change the read.

use serde_json::{Value, json};

use super::plan::RawItem;
use super::{BlockItems, Reader, SyncError, each};
use crate::ado::kinds::{self as ado_kinds, Criteria};
use crate::ado::{Guid, resources, resources_cicd as live};
use crate::mapping::{CompiledConfig, CompiledResource};
use crate::queue::message::{Change, ChangeMessage};

/// The follow-on kinds of a change, in the order they are applied.
pub fn follow_on_kinds(change: &Change) -> &'static [&'static str] {
    match change {
        Change::Build { .. } => &[
            "build",
            "pipeline-run",
            "pipeline-stage",
            "test-run",
            "pipeline-deployment",
        ],
        Change::PipelineRun { .. } => &[
            "pipeline-run",
            "pipeline-stage",
            "build",
            "pipeline-deployment",
        ],
        Change::Release { .. } => &["release", "release-definition"],
        Change::ReleaseDeployment { .. } => &["release-deployment", "release"],
        Change::SecurityAlert { .. } => &["advanced-security-alert"],
        Change::Push { .. } => &["branch"],
        Change::WorkItem { .. } | Change::PullRequest { .. } | Change::Repository { .. } => &[],
    }
}

/// Reads every follow-on kind the mapping has blocks for. `None` for a kind means nothing to write.
pub(super) async fn read<'b>(
    reader: &Reader<'_>,
    mapping: &'b CompiledConfig,
    message: &ChangeMessage,
) -> Result<Vec<(&'static str, BlockItems<'b>)>, SyncError> {
    let wanted: Vec<(&'static str, Vec<&'b CompiledResource>)> = follow_on_kinds(&message.change)
        .iter()
        .map(|&k| (k, mapping.resources_of(k).collect::<Vec<_>>()))
        .filter(|(_, blocks)| !blocks.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let Some(project_id) = message.project_id.as_ref() else {
        tracing::info!(event_type = %message.event_type, "the change names no project; its CI/CD kinds cannot be read");
        return Ok(Vec::new());
    };
    if reader.excluded(Some(project_id)).await? {
        return Ok(Vec::new());
    }
    let ado = reader.ado;
    let context = format!("{} in project {project_id}", message.event_type);
    let err = |e| SyncError::ado(&context, e);
    let project = match resources::project(ado, project_id).await.map_err(err)? {
        Some(p) => p,
        None => {
            tracing::info!(project = %project_id, "project not found; nothing to do");
            return Ok(Vec::new());
        }
    };
    let mut out = Vec::new();
    match &message.change {
        Change::Build {
            build_id,
            definition_id,
        } => {
            builds(
                reader,
                &wanted,
                &project,
                *build_id,
                *definition_id,
                None,
                &mut out,
            )
            .await?;
        }
        Change::PipelineRun {
            pipeline_id,
            run_id,
            stage_id,
        } => {
            let Some(run_id) = run_id else {
                return Ok(Vec::new());
            };
            builds(
                reader,
                &wanted,
                &project,
                *run_id,
                *pipeline_id,
                stage_id.as_ref(),
                &mut out,
            )
            .await?;
        }
        Change::Release {
            release_id,
            definition_id,
        } => {
            releases(
                reader,
                &wanted,
                &project,
                *release_id,
                *definition_id,
                None,
                &mut out,
            )
            .await?;
        }
        Change::ReleaseDeployment {
            release_id,
            definition_environment_id,
            deployment_id,
        } => {
            let deployment = Some((*definition_environment_id, *deployment_id));
            releases(
                reader,
                &wanted,
                &project,
                *release_id,
                None,
                deployment,
                &mut out,
            )
            .await?;
        }
        Change::SecurityAlert {
            repository_id,
            alert_id,
        } => {
            let current = live::security_alert(ado, project_id, repository_id, *alert_id)
                .await
                .map_err(err)?;
            for (kind, blocks) in &wanted {
                let items = blocks
                    .iter()
                    .map(|&b| {
                        // The listing only returns alerts inside the block's criteria; live, an alert that
                        // left them (fixed, dismissed) must leave the catalog too.
                        let criteria = Criteria::read(b.selector()).unwrap_or_default();
                        let raw = match &current {
                            Some(a) if criteria.admits(a) => RawItem::Current(a.clone()),
                            _ => RawItem::Gone(live::deleted_security_alert(
                                project_id,
                                repository_id,
                                *alert_id,
                            )),
                        };
                        (b, raw)
                    })
                    .collect();
                out.push((*kind, items));
            }
        }
        Change::Push {
            repository_id,
            ref_updates,
        } => {
            let repo = resources::repository(ado, Some(project_id), repository_id)
                .await
                .map_err(err)?;
            // A removed or disabled repository is the repository kind's business; the resync drops its
            // branches.
            let Some(repo) = repo.filter(ado_kinds::is_healthy_repo) else {
                return Ok(Vec::new());
            };
            let items: Vec<RawItem> = ref_updates
                .iter()
                .filter(|u| u.name.starts_with("refs/heads/"))
                .map(|u| {
                    // Deliveries of one repository are applied in order (one FIFO group), so the pushed
                    // object id is the branch's current one.
                    if u.new_object_id.chars().all(|c| c == '0') {
                        RawItem::Gone(ado_kinds::branch_item(
                            &u.name,
                            json!(u.old_object_id),
                            &repo,
                        ))
                    } else {
                        RawItem::Current(ado_kinds::branch_item(
                            &u.name,
                            json!(u.new_object_id),
                            &repo,
                        ))
                    }
                })
                .collect();
            for (kind, blocks) in &wanted {
                let per_block = blocks
                    .iter()
                    .flat_map(|&b| items.iter().map(move |raw| (b, raw.clone())))
                    .collect();
                out.push((*kind, per_block));
            }
        }
        Change::WorkItem { .. } | Change::PullRequest { .. } | Change::Repository { .. } => {}
    }
    Ok(out)
}

/// build, pipeline-run, pipeline-stage and test-run of one build (= run).
async fn builds<'b>(
    reader: &Reader<'_>,
    wanted: &[(&'static str, Vec<&'b CompiledResource>)],
    project: &Value,
    build_id: u64,
    pipeline_id: Option<u64>,
    stage_id: Option<&Guid>,
    out: &mut Vec<(&'static str, BlockItems<'b>)>,
) -> Result<(), SyncError> {
    let ado = reader.ado;
    let context = format!("build {build_id}");
    let err = |e| SyncError::ado(&context, e);
    let raw_build = live::build(ado, project, build_id).await.map_err(err)?;
    let pipeline_id = pipeline_id.or_else(|| {
        raw_build
            .as_ref()
            .and_then(|b| b.pointer("/definition/id"))
            .and_then(Value::as_u64)
    });
    for (kind, blocks) in wanted {
        let items: BlockItems<'b> = match *kind {
            "build" => {
                let mut items = Vec::new();
                for &b in blocks {
                    let raw = match &raw_build {
                        Some(build) => {
                            let first =
                                ado_kinds::first_commit_option(b.selector()).map_err(|e| {
                                    SyncError::permanent(format!("build resource {}", b.index()), e)
                                })?;
                            RawItem::Current(
                                live::enrich_build(ado, project, build.clone(), first)
                                    .await
                                    .map_err(err)?,
                            )
                        }
                        None => RawItem::Gone(live::deleted_build(build_id, project)),
                    };
                    items.push((b, raw));
                }
                items
            }
            "pipeline-run" => {
                let Some(pid) = pipeline_id else { continue };
                match live::pipeline_run(ado, project, pid, build_id)
                    .await
                    .map_err(err)?
                {
                    Some(run) => each(blocks, RawItem::Current(run)),
                    None => {
                        let mut gone = json!({ "id": build_id });
                        ado_kinds::enrich_run(&mut gone, project, &json!({ "id": pid }));
                        each(blocks, RawItem::Gone(gone))
                    }
                }
            }
            "pipeline-stage" => {
                let Some(build) = &raw_build else { continue };
                let stages = live::stages(ado, project, build, stage_id)
                    .await
                    .map_err(err)?;
                blocks
                    .iter()
                    .flat_map(|&b| stages.iter().map(move |s| (b, RawItem::Current(s.clone()))))
                    .collect()
            }
            // The peer never updates deployment records live; a finished build is when they appear.
            "pipeline-deployment" => {
                let records = live::deployment_records_of_build(ado, project, build_id)
                    .await
                    .map_err(err)?;
                blocks
                    .iter()
                    .flat_map(|&b| {
                        records
                            .iter()
                            .map(move |r| (b, RawItem::Current(r.clone())))
                    })
                    .collect()
            }
            "test-run" => {
                let mut items = Vec::new();
                for &b in blocks {
                    let runs = live::test_runs_of_build(ado, project, build_id, b.selector())
                        .await
                        .map_err(err)?;
                    items.extend(runs.into_iter().map(|r| (b, RawItem::Current(r))));
                }
                items
            }
            _ => continue,
        };
        out.push((*kind, items));
    }
    Ok(())
}

/// release, release-definition and release-deployment of one release.
async fn releases<'b>(
    reader: &Reader<'_>,
    wanted: &[(&'static str, Vec<&'b CompiledResource>)],
    project: &Value,
    release_id: u64,
    definition_id: Option<u64>,
    deployment: Option<(Option<u64>, Option<u64>)>,
    out: &mut Vec<(&'static str, BlockItems<'b>)>,
) -> Result<(), SyncError> {
    let ado = reader.ado;
    let context = format!("release {release_id}");
    let err = |e| SyncError::ado(&context, e);
    let project_id = &resources::project_id_of(project).map_err(err)?;
    let release = live::release(ado, project_id, release_id)
        .await
        .map_err(err)?;
    let definition_id = definition_id.or_else(|| {
        release
            .as_ref()
            .and_then(|r| r.pointer("/releaseDefinition/id"))
            .and_then(Value::as_u64)
    });
    for (kind, blocks) in wanted {
        let items: BlockItems<'b> = match *kind {
            "release" => blocks
                .iter()
                .map(|&b| {
                    let raw = match &release {
                        Some(r) => match ado_kinds::release_as_listed(r, b.selector()) {
                            Some(listed) => RawItem::Current(listed),
                            None => RawItem::Gone(r.clone()),
                        },
                        None => RawItem::Gone(
                            json!({ "id": release_id, "projectReference": { "id": project_id } }),
                        ),
                    };
                    (b, raw)
                })
                .collect(),
            "release-definition" => {
                let Some(def) = definition_id else { continue };
                match live::release_definition(ado, project, def)
                    .await
                    .map_err(err)?
                {
                    Some(d) => each(blocks, RawItem::Current(d)),
                    None => {
                        let mut gone = json!({ "id": def });
                        ado_kinds::enrich_definition(&mut gone, project);
                        each(blocks, RawItem::Gone(gone))
                    }
                }
            }
            "release-deployment" => {
                let (Some(def), Some((env, deployment_id))) = (definition_id, deployment) else {
                    continue;
                };
                match live::release_deployment(ado, project_id, def, env, release_id, deployment_id)
                    .await
                    .map_err(err)?
                {
                    Some(d) => each(blocks, RawItem::Current(d)),
                    // Not listed yet (the event can outrun the list): the next event or resync brings it.
                    None => continue,
                }
            }
            _ => continue,
        };
        out.push((*kind, items));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_names_the_kinds_it_also_moves() {
        let build = Change::Build {
            build_id: 1,
            definition_id: None,
        };
        assert_eq!(
            follow_on_kinds(&build),
            [
                "build",
                "pipeline-run",
                "pipeline-stage",
                "test-run",
                "pipeline-deployment"
            ]
        );
        let push = Change::Push {
            repository_id: Guid::parse("278d5cd2-584d-4b63-824a-2ba458937249").unwrap(),
            ref_updates: vec![],
        };
        assert_eq!(follow_on_kinds(&push), ["branch"]);
        let deployment = Change::ReleaseDeployment {
            release_id: 1,
            definition_environment_id: None,
            deployment_id: None,
        };
        assert_eq!(
            follow_on_kinds(&deployment),
            ["release-deployment", "release"]
        );
        let item = Change::WorkItem {
            id: 1,
            deleted: false,
            snapshot: None,
        };
        assert!(follow_on_kinds(&item).is_empty());
    }
}
