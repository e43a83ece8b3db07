//! Self-service actions end to end on real parts: the simulated catalog holds the action runs (claimed
//! in the pull model, or POSTed signed to `/actions` in the push model), the claimer queues jobs into a
//! FIFO queue on the local SQS server (moto) through the resync function's handler, the processor
//! function's handler runs the simulated pipeline, and the pipeline's `run-state-changed` deliveries
//! come back through the webhook to report the outcome on the action run.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use shared::actions::{ActionJob, Invocation, RunId, TRIGGER_PIPELINE};
use shared::ado::hooks::{SubscriptionSettings, sync_subscriptions};
use shared::ado::kinds::FetchContext;
use shared::queue::sqs_json::SqsSender;
use shared::queue::{Change, ChangeMessage, Queue, QueueConsumer};
use shared::webhook::{WebhookSettings, accept_at};
use sim::ado::AdoSimOptions;
use sim::catalog::{NewActionRun, sign_webhook};

use crate::helpers::{Setup, TestOrg, as_sqs_record, failed_ids};
use crate::moto::{FifoPair, aws_access, fifo_pair};

const PORT_SECRET: &str = "port-webhook-secret";

/// An organisation with actions on, a FIFO queue on moto, and a local webhook (deliveries and
/// `/actions`) queueing into it, subscribed in the simulated organisation.
struct Actions {
    org: TestOrg,
    pair: FifoPair,
    webhook_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Actions {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start(ado: AdoSimOptions) -> Actions {
    let org = Setup {
        ado,
        env: vec![
            ("ACTIONS_ENABLED", "true".into()),
            ("ACTIONS_CLAIM_SECS", "0".into()),
        ],
        ..Setup::default()
    }
    .start()
    .await;
    let pair = fifo_pair(5).await;
    let settings = Arc::new(
        WebhookSettings::from_lookup(|k| match k {
            "WEBHOOK_SECRET" => Some("hook-secret".into()),
            "ACTIONS_WEBHOOK_SECRET" => Some(PORT_SECRET.into()),
            _ => None,
        })
        .unwrap(),
    );
    let queue = Arc::new(pair.main.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (settings, queue) = (settings.clone(), queue.clone());
            async move {
                accept_at(&settings, queue.as_ref(), uri.path(), &headers, &body)
                    .await
                    .status()
            }
        },
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let webhook_url = format!("{base}/webhook");
    let subs = SubscriptionSettings::from_lookup(|k| match k {
        "WEBHOOK_URL" => Some(webhook_url.clone()),
        "WEBHOOK_SECRET" => Some("hook-secret".into()),
        "INTEGRATION_IDENTIFIER" => Some("e2e".into()),
        _ => None,
    })
    .unwrap();
    let ctx = FetchContext::new(org.runtime.ado.clone(), Vec::new());
    assert!(sync_subscriptions(&ctx, &subs).await.succeeded());
    Actions {
        org,
        pair,
        webhook_url: base,
        server,
    }
}

impl Actions {
    /// One poll of the event source mapping into the processor's handler; the messages processed.
    async fn pump(&self) -> usize {
        let batch = self
            .pair
            .main
            .receive(10, Duration::from_millis(500))
            .await
            .unwrap();
        if batch.is_empty() {
            return 0;
        }
        let mut event = SqsEvent::default();
        event.records = batch.iter().map(as_sqs_record).collect();
        let failed = failed_ids(&self.org.process(event).await);
        assert!(failed.is_empty(), "records failed: {failed:?}");
        for m in &batch {
            self.pair.main.ack(&m.receipt).await.unwrap();
        }
        batch.len()
    }

    /// Pumps until the action run is no longer in progress (or 15 s passed); the run as the catalog
    /// shows it.
    async fn pump_until_finished(&self, run: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            self.pump().await;
            let now = self.org.sim.catalog.action_run(run).unwrap();
            if now["status"] != "IN_PROGRESS" || tokio::time::Instant::now() > deadline {
                return now;
            }
        }
    }

    /// A project name and one of its pipelines, read from the simulated organisation.
    async fn pipeline(&self) -> (String, String, u64) {
        let ado = &self.org.runtime.ado;
        let project = ado.get("/_apis/projects").await.unwrap().body["value"][0].clone();
        let id = project["id"].as_str().unwrap().to_owned();
        let pipelines = ado
            .get(format!("/{id}/_apis/pipelines"))
            .await
            .unwrap()
            .body;
        let pipeline = pipelines["value"][0]["id"].as_u64().unwrap();
        (project["name"].as_str().unwrap().to_owned(), id, pipeline)
    }

    /// A run of an integration action, pending for this installation's claimer.
    fn pending(&self, inputs: Value) -> String {
        self.new_run(Some("e2e"), inputs)
    }

    /// A run of a webhook action, which the catalog invokes by POSTing it.
    fn webhook_run(&self, inputs: Value) -> String {
        self.new_run(None, inputs)
    }

    fn new_run(&self, installation: Option<&str>, inputs: Value) -> String {
        self.org.sim.catalog.create_action_run(NewActionRun {
            action: "trigger_pipeline".into(),
            installation_id: installation.map(str::to_owned),
            integration_action_type: TRIGGER_PIPELINE.into(),
            properties: inputs,
        })
    }

    /// One scheduled claimer invocation: the resync function's handler, queueing through the signed
    /// SQS JSON call.
    async fn claim(&self) -> Value {
        let sender = SqsSender::new(aws_access(), self.pair.main_url.clone());
        let event = LambdaEvent::new(json!({"job": "claim-actions"}), Context::default());
        resync_function::claim(&self.org.runtime, Some(&sender as &dyn Queue), event)
            .await
            .expect("the claimer round succeeds")
    }
}

fn logs(run: &Value) -> String {
    run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_claimed_run_starts_one_pipeline_and_its_success_is_reported_once() {
    let a = start(AdoSimOptions::default()).await;
    let (project, project_id, pipeline) = a.pipeline().await;
    let run = a.pending(
        json!({"project": project, "pipelineId": pipeline.to_string(), "branch": "main",
                               "templateParameters": {"environment": "staging"},
                               "variables": {"greeting": "hello"}}),
    );

    let report = a.claim().await;
    assert_eq!(report["queued"], 1, "{report}");
    assert_eq!(a.pump().await, 1);

    let started = a.org.sim.ado.started_runs();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(
        started[0]["body"],
        json!({"resources": {"repositories": {"self": {"refName": "refs/heads/main"}}},
               "templateParameters": {"environment": "staging"},
               "variables": {"greeting": {"value": "hello"}}})
    );
    let pipeline_run = started[0]["runId"].as_u64().unwrap();
    let action = a.org.sim.catalog.action_run(&run).unwrap();
    assert_eq!(
        action["externalRunId"],
        format!("ado_{project_id}_{pipeline}_{pipeline_run}")
    );
    assert!(
        action["link"][0]
            .as_str()
            .unwrap()
            .contains("_build/results"),
        "{action}"
    );
    assert!(logs(&action).contains(&format!("Pipeline run {pipeline_run} started")));

    // The simulated run completes; its run-state-changed delivery reports the outcome.
    let done = a.pump_until_finished(&run).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(logs(&done).contains("succeeded"), "{done}");

    // The job delivered again starts nothing; the completion delivered again reports nothing.
    let job = ActionJob {
        run_id: RunId::parse(&run).unwrap(),
        action_type: TRIGGER_PIPELINE.into(),
        inputs: json!({"project": project, "pipelineId": pipeline}),
        via: Invocation::Claimed,
    };
    a.org.runtime.apply(&job.into_message()).await.unwrap();
    let completion = ChangeMessage {
        version: 1,
        event_id: "completed-again".into(),
        event_type: "ms.vss-pipelines.run-state-changed-event".into(),
        publisher_id: "pipelines".into(),
        subscription_id: None,
        created_date: None,
        project_id: Some(project_id.parse().unwrap()),
        base_url: None,
        change: Change::PipelineRun {
            pipeline_id: Some(pipeline),
            run_id: Some(pipeline_run),
            stage_id: None,
            completed: true,
        },
    };
    a.org.runtime.apply(&completion).await.unwrap();
    assert_eq!(a.org.sim.ado.started_runs().len(), 1);
    assert_eq!(
        a.org.sim.catalog.action_run_status_changes(&run),
        ["SUCCESS"]
    );
    // Claimed and acknowledged once: nothing is pending any more.
    assert_eq!(a.claim().await["queued"], 0);
}

#[tokio::test]
async fn a_signed_webhook_run_reports_a_failed_pipeline_and_a_canceled_one_distinctly() {
    let a = start(AdoSimOptions {
        pipeline_run_result: "failed".into(),
        ..AdoSimOptions::default()
    })
    .await;
    let (project, _, pipeline) = a.pipeline().await;
    let url = format!("{}/actions", a.webhook_url);
    let failing = a.webhook_run(json!({"project": project, "pipelineId": pipeline}));
    let (status, _) = a
        .org
        .sim
        .catalog
        .invoke_action_webhook(&url, PORT_SECRET, &failing)
        .await
        .unwrap();
    assert_eq!(status, 202);
    let done = a.pump_until_finished(&failing).await;
    assert_eq!(done["status"], "FAILURE", "{done}");
    assert!(logs(&done).contains("failed"), "{done}");

    // A run canceled in Azure DevOps says so.
    let canceled = a.webhook_run(json!({"project": project, "pipelineId": pipeline}));
    let (status, _) = a
        .org
        .sim
        .catalog
        .invoke_action_webhook(&url, PORT_SECRET, &canceled)
        .await
        .unwrap();
    assert_eq!(status, 202);
    a.pump().await;
    let run_id = a.org.sim.ado.started_runs().last().unwrap()["runId"]
        .as_u64()
        .unwrap();
    assert!(a.org.sim.ado.complete_run(run_id, "canceled"));
    let done = a.pump_until_finished(&canceled).await;
    assert_eq!(done["status"], "FAILURE", "{done}");
    assert!(logs(&done).contains("canceled"), "{done}");
}

#[tokio::test]
async fn forged_and_replayed_invocations_are_refused_and_nothing_is_queued() {
    let a = start(AdoSimOptions::default()).await;
    let (project, _, pipeline) = a.pipeline().await;
    let run = a.webhook_run(json!({"project": project, "pipelineId": pipeline}));
    let url = format!("{}/actions", a.webhook_url);
    let (status, _) = a
        .org
        .sim
        .catalog
        .invoke_action_webhook(&url, "not-the-secret", &run)
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(a.pump().await, 0, "a forged invocation queued nothing");

    let body = a
        .org
        .sim
        .catalog
        .webhook_invocation(&run)
        .unwrap()
        .to_string();
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = sign_webhook(PORT_SECRET, &ts, body.as_bytes());
    let post = || {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-port-timestamp", &ts)
            .header("x-port-signature", &signature)
            .body(body.clone())
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 202);
    assert_eq!(post().await.unwrap().status(), 409, "the replay is refused");
    let stale = (chrono::Utc::now().timestamp() - 600).to_string();
    let old = reqwest::Client::new()
        .post(&url)
        .header("x-port-timestamp", &stale)
        .header(
            "x-port-signature",
            sign_webhook(PORT_SECRET, &stale, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "a stale timestamp is refused");
    assert_eq!(a.pump().await, 1, "only the genuine invocation was queued");
    assert_eq!(a.org.sim.ado.started_runs().len(), 1);
}

#[tokio::test]
async fn azure_devops_refusals_end_the_action_run_as_failure_with_the_reason() {
    let a = start(AdoSimOptions::default()).await;
    let (project, _, pipeline) = a.pipeline().await;
    let missing = a.pending(json!({"project": project, "pipelineId": 987_654}));
    let bad_parameter = a.pending(json!({"project": project, "pipelineId": pipeline,
                                         "templateParameters": {"nope": "x"}}));
    let no_project = a.pending(json!({"project": "No Such Project", "pipelineId": pipeline}));
    let no_inputs = a.pending(json!({"pipelineId": pipeline}));
    assert_eq!(a.claim().await["queued"], 4);
    while a.pump().await > 0 {}

    let failed = |run: &str, says: &str| {
        let run = a.org.sim.catalog.action_run(run).unwrap();
        assert_eq!(run["status"], "FAILURE", "{run}");
        assert!(logs(&run).contains(says), "{says}: {run}");
    };
    failed(&missing, "was not found");
    failed(&bad_parameter, "Unexpected parameter 'nope'");
    failed(&no_project, "Project No Such Project was not found");
    failed(&no_inputs, "input project is required");
    assert!(a.org.sim.ado.started_runs().is_empty());
}

#[tokio::test]
async fn a_pipeline_that_never_completes_fails_its_action_run_after_the_timeout() {
    let a = start(AdoSimOptions {
        pipeline_run_duration: None,
        ..AdoSimOptions::default()
    })
    .await;
    let (project, _, pipeline) = a.pipeline().await;
    let run = a.pending(json!({"project": project, "pipelineId": pipeline}));
    a.claim().await;
    a.pump().await;
    let runs = a.org.runtime.action_runs().unwrap();
    let day = Duration::from_secs(24 * 3600);
    let now = chrono::Utc::now();
    assert_eq!(
        shared::actions::claim::time_out(runs, day, now)
            .await
            .unwrap(),
        0,
        "not yet"
    );
    let later = now + chrono::TimeDelta::hours(25);
    assert_eq!(
        shared::actions::claim::time_out(runs, day, later)
            .await
            .unwrap(),
        1
    );
    let done = a.org.sim.catalog.action_run(&run).unwrap();
    assert_eq!(done["status"], "FAILURE");
    assert!(
        logs(&done).contains("did not complete within 24 hours"),
        "{done}"
    );
}
