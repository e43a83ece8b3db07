//! Single-resource reads for the live events of the CI/CD, release and alert kinds: each returns the item
//! enriched exactly as its listing kind enriches it (`Ok(None)` when Azure DevOps says it is gone), so a
//! live write maps to the entity the resync wrote.

use serde_json::{Value, json};

use super::ids::Guid;
use super::kinds::{self, str_field};
use super::resources::project_id_of;
use super::{AdoClient, AdoError, ApiVersion, Request, Service};

fn found(result: Result<super::Reply, AdoError>) -> Result<Option<Value>, AdoError> {
    match result {
        Ok(reply) => Ok(Some(reply.body)),
        Err(AdoError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A build as the build list renders it (no enrichment: `pipeline-stage` puts it raw into `__build`).
pub async fn build(
    client: &AdoClient,
    project: &Value,
    id: u64,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!(
        "/{}/_apis/build/builds/{id}",
        project_id_of(project)?
    ));
    found(client.send(&req).await)
}

/// The `build` kind's item: `__projectId`, `__project` and, when asked, `__firstCommit`.
pub async fn enrich_build(
    client: &AdoClient,
    project: &Value,
    build: Value,
    first_commit: bool,
) -> Result<Value, AdoError> {
    let mut page = kinds::enrich_builds(client, project, vec![build], first_commit).await?;
    Ok(page.pop().unwrap_or(Value::Null))
}

/// What the listing would have produced for a build that is gone.
pub fn deleted_build(id: u64, project: &Value) -> Value {
    let mut item = json!({ "id": id });
    if let Value::Object(map) = &mut item {
        map.insert("__projectId".into(), json!(str_field(project, "id")));
        map.insert("__project".into(), project.clone());
    }
    item
}

/// The build's Stage records (one stage when `stage_id` is given), as `pipeline-stage` lists them.
pub async fn stages(
    client: &AdoClient,
    project: &Value,
    build: &Value,
    stage_id: Option<&Guid>,
) -> Result<Vec<Value>, AdoError> {
    // The timeline read puts the project's id into its path.
    project_id_of(project)?;
    let stage_id = stage_id.map(Guid::to_string);
    kinds::stages_of(client, project, build, stage_id.as_deref()).await
}

/// A pipeline run with `__project` and `__pipeline`. The single GET adds fields the Runs List leaves out
/// (`resources`, `templateParameters`, …); they are dropped so the entity matches the listed one.
pub async fn pipeline_run(
    client: &AdoClient,
    project: &Value,
    pipeline_id: u64,
    run_id: u64,
) -> Result<Option<Value>, AdoError> {
    let project_id = project_id_of(project)?;
    let pipeline = found(
        client
            .send(&Request::get(format!(
                "/{project_id}/_apis/pipelines/{pipeline_id}"
            )))
            .await,
    )?
    .unwrap_or_else(|| json!({ "id": pipeline_id }));
    let req = Request::get(format!(
        "/{project_id}/_apis/pipelines/{pipeline_id}/runs/{run_id}"
    ));
    let run = found(client.send(&req).await)?;
    Ok(run.map(|mut run| {
        if let Value::Object(map) = &mut run {
            for key in [
                "resources",
                "templateParameters",
                "variables",
                "finalYaml",
                "yamlDetails",
            ] {
                map.remove(key);
            }
        }
        kinds::enrich_run(&mut run, project, &pipeline);
        run
    }))
}

/// The test runs of one build, enriched with the selector's results and coverage options.
pub async fn test_runs_of_build(
    client: &AdoClient,
    project: &Value,
    build_id: u64,
    selector: &crate::mapping::Selector,
) -> Result<Vec<Value>, AdoError> {
    use futures::TryStreamExt;
    let opts = kinds::Options::read(selector).map_err(|e| kinds::option_error("test-run", e))?;
    let req = kinds::runs_request(&project_id_of(project)?.to_string())
        .query("buildUri", format!("vstfs:///Build/Build/{build_id}"));
    let pages: Vec<Vec<Value>> = client
        .top_skip_pages(req, kinds::PAGE_SIZE, None)
        .try_collect()
        .await?;
    kinds::enrich_runs(client, project, pages.into_iter().flatten().collect(), opts).await
}

/// A release, in full (the single GET always carries environments and artifacts).
pub async fn release(
    client: &AdoClient,
    project_id: &Guid,
    id: u64,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!("/{project_id}/_apis/release/releases/{id}"))
        .service(Service::Release);
    found(client.send(&req).await)
}

/// A release definition with its environments, enriched with `__project`.
pub async fn release_definition(
    client: &AdoClient,
    project: &Value,
    id: u64,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!(
        "/{}/_apis/release/definitions/{id}",
        project_id_of(project)?
    ))
    .service(Service::Release);
    Ok(found(client.send(&req).await)?.map(|mut d| {
        kinds::enrich_definition(&mut d, project);
        d
    }))
}

/// The deployment of one release to one environment. The deployments list has no release filter (the
/// peer's `releaseId` parameter is ignored by ADO, so it takes the newest deployment of *any* release);
/// this narrows by definition and environment and picks the release's own deployment.
pub async fn release_deployment(
    client: &AdoClient,
    project_id: &Guid,
    definition_id: u64,
    definition_environment_id: Option<u64>,
    release_id: u64,
    deployment_id: Option<u64>,
) -> Result<Option<Value>, AdoError> {
    use futures::TryStreamExt;
    let mut req = Request::get(format!("/{project_id}/_apis/release/deployments"))
        .service(Service::Release)
        .query("definitionId", definition_id)
        .query("queryOrder", "descending");
    if let Some(env) = definition_environment_id {
        req = req.query("definitionEnvironmentId", env);
    }
    let pages = client.token_pages(req, Some(kinds::PAGE_SIZE), "value");
    futures::pin_mut!(pages);
    while let Some(page) = pages.try_next().await? {
        if let Some(d) = page.into_iter().find(|d| {
            d.pointer("/release/id").and_then(Value::as_u64) == Some(release_id)
                && deployment_id.is_none_or(|id| d["id"].as_u64() == Some(id))
        }) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// An Advanced Security alert with `__repositoryId` and `__projectId`; a repository without Advanced
/// Security (400) has no alert.
pub async fn security_alert(
    client: &AdoClient,
    project_id: &Guid,
    repository_id: &Guid,
    alert_id: u64,
) -> Result<Option<Value>, AdoError> {
    let req = Request::get(format!(
        "/{project_id}/_apis/alert/repositories/{repository_id}/alerts/{alert_id}"
    ))
    .service(Service::AdvancedSecurity)
    .version(ApiVersion::Exact(kinds::ADVSEC_VERSION.into()));
    let alert = match client.send(&req).await {
        Ok(reply) => Some(reply.body),
        Err(AdoError::NotFound(_)) | Err(AdoError::Invalid(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(alert.map(|mut a| {
        kinds::enrich_alert(&mut a, &repository_id.to_string(), &project_id.to_string());
        a
    }))
}

/// What the listing would have produced for an alert that is gone (or no longer passes the criteria).
pub fn deleted_security_alert(project_id: &Guid, repository_id: &Guid, alert_id: u64) -> Value {
    let mut a = json!({ "alertId": alert_id });
    kinds::enrich_alert(&mut a, &repository_id.to_string(), &project_id.to_string());
    a
}

/// The deployment records a build wrote to the project's environments, as `pipeline-deployment` lists
/// them. Records come newest first, so the first page of each environment holds a build that just
/// finished: one call per environment, not a full listing.
pub async fn deployment_records_of_build(
    client: &AdoClient,
    project: &Value,
    build_id: u64,
) -> Result<Vec<Value>, AdoError> {
    use futures::TryStreamExt;
    let project_id = project_id_of(project)?;
    let envs: Vec<Vec<Value>> = client
        .token_pages(
            kinds::environments_request(&project_id.to_string()),
            Some(kinds::PAGE_SIZE),
            "value",
        )
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for env in envs.into_iter().flatten() {
        // Environment ids are integers; one that is not is skipped rather than put into a path.
        let Some(env_id) = env["id"].as_u64() else {
            tracing::warn!(environment = %env["id"], "environment without an integer id skipped");
            continue;
        };
        let req = Request::get(format!(
            "/{project_id}/_apis/distributedtask/environments/{env_id}/environmentdeploymentrecords"
        ))
        .version(ApiVersion::Preview(1))
        .query("top", kinds::PAGE_SIZE);
        let Some(page) = found(client.send(&req).await)? else {
            continue;
        };
        out.extend(
            super::paging::take_items(page, "value")
                .into_iter()
                .filter(|r| r.pointer("/owner/id").and_then(Value::as_u64) == Some(build_id))
                .map(|mut r| {
                    if let Value::Object(map) = &mut r {
                        map.insert("__project".into(), project.clone());
                    }
                    r
                }),
        );
    }
    Ok(out)
}
