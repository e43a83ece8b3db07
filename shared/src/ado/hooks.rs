//! Service-hook subscriptions: the events we subscribe to, the subscriptions we want, and the reconcile that
//! creates, replaces and removes ours — and never touches anyone else's.
//!
//! Ours are recognised by a marker in the registered URL (`integration=<identifier>` in the query), not by
//! the URL itself: after the webhook moves (a new stage, a new API Gateway id) the old subscriptions still
//! carry the marker, so they are found and removed instead of being left to fail into `disabledBySystem`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::kinds::FetchContext;
use super::{AdoClient, AdoError, ApiVersion, Request, Service};
pub use crate::config::DEFAULT_WEBHOOK_USERNAME;
use crate::config::{ConfigError, Env, WebhookCredentials};

/// One event we subscribe to, with where its subscriptions live and the payload version we pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    pub publisher_id: &'static str,
    pub event_type: &'static str,
    /// Always pinned: without it ADO sends "the latest released" shape, which changes under us, and
    /// preview versions are switched off 12 weeks after their GA.
    pub resource_version: &'static str,
    /// The host whose Subscriptions API holds these subscriptions. Release (`rm`) subscriptions live on the
    /// vsrm host: listing them on the core host misses them and creates duplicates.
    pub service: Service,
    /// Events that exist on Azure DevOps Services only; Azure DevOps Server would answer 400 for them.
    pub cloud_only: bool,
}

impl EventSpec {
    const fn new(
        publisher_id: &'static str,
        event_type: &'static str,
        resource_version: &'static str,
        service: Service,
        cloud_only: bool,
    ) -> Self {
        Self {
            publisher_id,
            event_type,
            resource_version,
            service,
            cloud_only,
        }
    }

    /// A `tfs` event (Git, work items, `build.complete`).
    pub(crate) const fn tfs(event_type: &'static str) -> Self {
        Self::new(TFS, event_type, V_TFS, Service::Core, false)
    }

    /// A YAML pipelines event; `cloud_only` for those Azure DevOps Server does not publish.
    pub(crate) const fn pipelines(event_type: &'static str, cloud_only: bool) -> Self {
        Self::new(
            PIPELINES,
            event_type,
            V_PIPELINES,
            Service::Core,
            cloud_only,
        )
    }

    /// A classic release event (subscribed on the release host).
    pub(crate) const fn release(event_type: &'static str) -> Self {
        Self::new(RM, event_type, V_RM, Service::Release, false)
    }

    /// An Advanced Security alert event (Services only).
    pub(crate) const fn advanced_security(event_type: &'static str) -> Self {
        Self::new(
            ADVSEC,
            event_type,
            V_ADVSEC,
            Service::AdvancedSecurity,
            true,
        )
    }

    /// The api-version for this publisher's Subscriptions API. Advanced Security's host only serves the
    /// 7.2 preview (as the peer found); every other host takes the client's configured version.
    fn api_version(&self) -> ApiVersion {
        if self.service == Service::AdvancedSecurity {
            ApiVersion::Exact("7.2-preview.1".into())
        } else {
            ApiVersion::Default
        }
    }
}

const TFS: &str = "tfs";
const PIPELINES: &str = "pipelines";
const RM: &str = "rm";
const ADVSEC: &str = "advsec";

/// Resource versions, per the service-hook event reference: the tfs git/work-item/build events are `1.0`,
/// the YAML pipelines events `5.1-preview.1`, the classic release events `3.0-preview.1`.
const V_TFS: &str = "1.0";
const V_PIPELINES: &str = "5.1-preview.1";
const V_RM: &str = "3.0-preview.1";
/// Not in the event reference; `1.0` is the only version the alert events have been published with.
const V_ADVSEC: &str = "1.0";

/// Every event we subscribe to: the events the kinds of [`kinds::ALL`](super::kinds::ALL) declare
/// (the peer's 23, plus repository deletes, renames and status changes, so repository entities follow,
/// and the PR merge-commit event), once each, in registry order.
pub static CATALOGUE: LazyLock<Vec<EventSpec>> =
    LazyLock::new(|| super::kinds::live_events().iter().map(|e| e.spec).collect());

/// Events we used to subscribe to. They are still listed (filtered) on every sync so that our old
/// subscriptions for them are removed: without an unfiltered list — which times out on large orgs — there is
/// no other way to find them. Move an event here when it leaves [`CATALOGUE`].
pub static RETIRED: &[EventSpec] = &[];

/// Where one set of subscriptions applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionScope {
    /// One subscription per event for the whole organisation (no `projectId` publisher input).
    Org,
    /// One subscription per event and project, for identities that cannot subscribe organisation-wide.
    PerProject,
}

/// The webhook's address and credentials, and how widely to subscribe.
#[derive(Clone)]
pub struct SubscriptionSettings {
    /// The webhook endpoint as configured, without our marker.
    pub webhook_url: Url,
    pub username: Option<String>,
    /// Sent as the Basic-auth password: ADO webhooks carry no signature, this is all the webhook can check.
    pub secret: Option<SecretString>,
    /// A custom header (name, value) ADO adds to every delivery.
    pub header: Option<(String, SecretString)>,
    pub scope: SubscriptionScope,
    pub integration_identifier: String,
}

impl std::fmt::Debug for SubscriptionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionSettings")
            .field("webhook_url", &self.webhook_url.as_str())
            .field("username", &self.username)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field(
                "header",
                &self.header.as_ref().map(|(n, _)| (n, "[redacted]")),
            )
            .field("scope", &self.scope)
            .field("integration_identifier", &self.integration_identifier)
            .finish()
    }
}

/// The query parameter that marks a registered URL as ours.
pub const MARKER_PARAM: &str = "integration";
/// The query parameter of the registered URL that carries the credential fingerprint.
pub const CREDENTIALS_PARAM: &str = "credentials";

impl SubscriptionSettings {
    /// The subscription settings of the resolved environment (aliases applied, secrets fetched).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env.get(k))
    }

    /// `None` when `WEBHOOK_URL` is not set in the resolved environment.
    pub fn from_env_if_set(env: &Env) -> Result<Option<Self>, ConfigError> {
        Self::from_lookup_if_set(|k| env.get(k))
    }

    /// `None` when `WEBHOOK_URL` is not set (live events are off); otherwise the parsed settings.
    pub fn from_lookup_if_set(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        if get("WEBHOOK_URL").is_none() {
            return Ok(None);
        }
        Self::from_lookup(get).map(Some)
    }

    /// The subscriptions' settings; the credentials follow the one rule of [`WebhookCredentials`], which
    /// the webhook checks deliveries against. Every problem is reported at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let webhook_url = match get("WEBHOOK_URL") {
            None => {
                problems.push(ConfigError::Missing {
                    name: "WEBHOOK_URL",
                    hint: "the public URL of the webhook function, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/webhook",
                });
                None
            }
            Some(raw) => match Url::parse(raw.trim()) {
                Err(e) => {
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_URL",
                        reason: format!("not a URL: {e}"),
                    });
                    None
                }
                Ok(url)
                    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() =>
                {
                    problems.push(ConfigError::Invalid {
                        name: "WEBHOOK_URL",
                        reason: "must be an https:// URL with a host".into(),
                    });
                    None
                }
                Ok(url) => Some(url),
            },
        };
        let credentials = WebhookCredentials::from_lookup(get)
            .map_err(|e| problems.push(e))
            .ok();
        let scope = match get("SUBSCRIPTIONS_SCOPE")
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("org") => SubscriptionScope::Org,
            Some("project") => SubscriptionScope::PerProject,
            Some(other) => {
                problems.push(ConfigError::Invalid {
                    name: "SUBSCRIPTIONS_SCOPE",
                    reason: format!("{other:?} is not org or project"),
                });
                SubscriptionScope::Org
            }
        };
        let integration_identifier = crate::config::IntegrationIdentifier::from_lookup(get)
            .map_err(|e| problems.push(e))
            .ok();
        ConfigError::check(problems)?;
        let (
            Some(webhook_url),
            Some(WebhookCredentials { basic, header }),
            Some(crate::config::IntegrationIdentifier(integration_identifier)),
        ) = (webhook_url, credentials, integration_identifier)
        else {
            unreachable!("a missing part is a problem reported above")
        };
        if webhook_url.scheme() == "http" && (basic.is_some() || header.is_some()) {
            tracing::warn!(
                "WEBHOOK_URL is http://: Azure DevOps would send the webhook credentials in clear text"
            );
        }
        let (username, secret) = basic.map_or((None, None), |(u, s)| (Some(u), Some(s)));
        Ok(Self {
            webhook_url,
            username,
            secret,
            header,
            scope,
            integration_identifier,
        })
    }

    /// True when ADO would send credentials we cannot read back (it masks them), so an existing
    /// subscription can never be shown to carry the current ones.
    pub fn has_credentials(&self) -> bool {
        self.secret.is_some() || self.header.is_some()
    }

    /// The URL we register: the webhook URL with `integration=<identifier>` set (replacing any value)
    /// and, with credentials, `credentials=<fingerprint>` ([`Self::credential_fingerprint`]).
    pub fn registered_url(&self) -> Url {
        let mut url = self.webhook_url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != MARKER_PARAM && k != CREDENTIALS_PARAM)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut pairs = url.query_pairs_mut();
        pairs
            .clear()
            .extend_pairs(kept)
            .append_pair(MARKER_PARAM, &self.integration_identifier);
        if let Some(fingerprint) = self.credential_fingerprint() {
            pairs.append_pair(CREDENTIALS_PARAM, &fingerprint);
        }
        drop(pairs);
        url
    }

    /// Which credentials a subscription was given. Azure DevOps masks the password and header values
    /// when a subscription is read, so this fingerprint, registered in the URL, is how a sync tells a
    /// rotated credential from an unchanged one (and replaces only then). 64 bits of a SHA-256 over the
    /// credentials: it says nothing usable about a generated secret; a guessable one could be checked
    /// against it offline, so generate the webhook secret.
    pub fn credential_fingerprint(&self) -> Option<String> {
        use sha2::{Digest, Sha256};
        if !self.has_credentials() {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"ado-sync webhook credentials v1\0");
        h.update(self.username.as_deref().unwrap_or_default());
        h.update(b"\0");
        if let Some(secret) = &self.secret {
            h.update(secret.expose_secret());
        }
        h.update(b"\0");
        if let Some((name, value)) = &self.header {
            h.update(name.to_ascii_lowercase());
            h.update(b":");
            h.update(value.expose_secret());
        }
        let digest = h.finalize();
        Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether an existing subscription is ours: its URL, on any host, carries our marker.
    pub fn is_ours(&self, subscription: &Value) -> bool {
        subscription
            .pointer("/consumerInputs/url")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .is_some_and(|u| {
                u.query_pairs()
                    .any(|(k, v)| k == MARKER_PARAM && v == self.integration_identifier.as_str())
            })
    }
}

/// One subscription we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSubscription {
    pub event: &'static EventSpec,
    pub project_id: Option<String>,
}

impl DesiredSubscription {
    /// The Create/Replace body. It holds the secrets: send it, never log it.
    pub fn body(&self, settings: &SubscriptionSettings) -> Value {
        let mut publisher_inputs = Map::new();
        if let Some(p) = &self.project_id {
            publisher_inputs.insert("projectId".into(), json!(p));
        }
        let mut consumer_inputs = Map::new();
        consumer_inputs.insert("url".into(), json!(settings.registered_url().as_str()));
        if let Some(u) = &settings.username {
            consumer_inputs.insert("basicAuthUsername".into(), json!(u));
        }
        if let Some(s) = &settings.secret {
            consumer_inputs.insert("basicAuthPassword".into(), json!(s.expose_secret()));
        }
        if let Some((name, value)) = &settings.header {
            consumer_inputs.insert(
                "httpHeaders".into(),
                json!(format!("{name}:{}", value.expose_secret())),
            );
        }
        // Full resources, no messages: a `git.push` created with the default or minimal detail level
        // arrives without repository, ref and commit details (the peer had to recreate its hooks for it).
        consumer_inputs.insert("resourceDetailsToSend".into(), json!("all"));
        consumer_inputs.insert("messagesToSend".into(), json!("none"));
        consumer_inputs.insert("detailedMessagesToSend".into(), json!("none"));
        json!({
            "publisherId": self.event.publisher_id,
            "eventType": self.event.event_type,
            "resourceVersion": self.event.resource_version,
            "consumerId": "webHooks",
            "consumerActionId": "httpRequest",
            "publisherInputs": publisher_inputs,
            "consumerInputs": consumer_inputs,
        })
    }
}

/// The subscriptions we want (pure). Org scope: one per event with no publisher inputs, which ADO accepts
/// as organisation-wide. Per-project scope: one per event and project, `publisherInputs.projectId` set.
/// Services-only events are left out on Azure DevOps Server.
pub fn desired_subscriptions(
    scope: SubscriptionScope,
    project_ids: &[String],
    cloud: bool,
) -> Vec<DesiredSubscription> {
    let events = CATALOGUE.iter().filter(|e| cloud || !e.cloud_only);
    match scope {
        SubscriptionScope::Org => events
            .map(|event| DesiredSubscription {
                event,
                project_id: None,
            })
            .collect(),
        SubscriptionScope::PerProject => events
            .flat_map(|event| {
                project_ids.iter().map(move |p| DesiredSubscription {
                    event,
                    project_id: Some(p.clone()),
                })
            })
            .collect(),
    }
}

/// What one event's reconcile did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventReport {
    pub publisher_id: String,
    pub event_type: String,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub errors: Vec<String>,
}

/// The outcome of one sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubscriptionReport {
    pub dry_run: bool,
    /// A failure before any event was reconciled (the project list could not be read); nothing was changed.
    pub error: Option<String>,
    pub events: Vec<EventReport>,
}

impl SubscriptionReport {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.events.iter().all(|e| e.failed == 0)
    }

    /// (created, updated, deleted, unchanged, failed) over every event.
    pub fn totals(&self) -> (usize, usize, usize, usize, usize) {
        self.events.iter().fold((0, 0, 0, 0, 0), |t, e| {
            (
                t.0 + e.created,
                t.1 + e.updated,
                t.2 + e.deleted,
                t.3 + e.unchanged,
                t.4 + e.failed,
            )
        })
    }

    /// A table for people.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if self.dry_run {
            out.push_str("dry run: nothing was changed; counts are what a sync would do\n");
        }
        if let Some(e) = &self.error {
            let _ = writeln!(out, "error: {e}");
        }
        let _ = writeln!(
            out,
            "{:<10} {:<52} {:>7} {:>7} {:>7} {:>9} {:>6}",
            "publisher", "event", "created", "updated", "deleted", "unchanged", "failed"
        );
        for e in &self.events {
            let _ = writeln!(
                out,
                "{:<10} {:<52} {:>7} {:>7} {:>7} {:>9} {:>6}",
                e.publisher_id,
                e.event_type,
                e.created,
                e.updated,
                e.deleted,
                e.unchanged,
                e.failed
            );
            for err in &e.errors {
                let _ = writeln!(out, "    {err}");
            }
        }
        let (c, u, d, n, f) = self.totals();
        let _ = writeln!(
            out,
            "total: {c} created, {u} updated, {d} deleted, {n} unchanged, {f} failed"
        );
        out
    }
}

/// How many events are reconciled at once. Each event's calls are sequential, so this bounds our share
/// of the client's requests too.
const EVENT_CONCURRENCY: usize = 5;

/// Creates, replaces and removes our subscriptions so that ADO holds exactly the desired set.
pub async fn sync_subscriptions(
    ctx: &FetchContext,
    settings: &SubscriptionSettings,
) -> SubscriptionReport {
    run(ctx, settings, false).await
}

/// What [`sync_subscriptions`] would do, without changing anything (reads only).
pub async fn preview_subscriptions(
    ctx: &FetchContext,
    settings: &SubscriptionSettings,
) -> SubscriptionReport {
    run(ctx, settings, true).await
}

async fn run(
    ctx: &FetchContext,
    settings: &SubscriptionSettings,
    dry_run: bool,
) -> SubscriptionReport {
    let client = &ctx.client;
    let project_ids: Vec<String> = match settings.scope {
        SubscriptionScope::Org => Vec::new(),
        SubscriptionScope::PerProject => match ctx.projects().await {
            Ok(ps) => ps
                .iter()
                .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            Err(e) => {
                // Without the project list every per-project subscription would look unwanted: stop before
                // deleting anything.
                return SubscriptionReport {
                    dry_run,
                    error: Some(format!("cannot list projects: {e}")),
                    events: Vec::new(),
                };
            }
        },
    };
    let desired = desired_subscriptions(settings.scope, &project_ids, client.org_url().is_cloud());
    let mut by_event: BTreeMap<(&str, &str), Vec<DesiredSubscription>> = BTreeMap::new();
    for d in desired {
        by_event
            .entry((d.event.publisher_id, d.event.event_type))
            .or_default()
            .push(d);
    }
    // Events left out of the desired set (retired, or Services-only on a server) are still listed, so that
    // ours for them are removed.
    let listed: Vec<&'static EventSpec> = CATALOGUE
        .iter()
        .chain(RETIRED)
        .filter(|e| client.org_url().is_cloud() || !e.cloud_only)
        .collect();
    let mut reports: Vec<(usize, EventReport)> =
        futures::stream::iter(listed.into_iter().enumerate())
            .map(|(i, event)| {
                let wanted = by_event
                    .remove(&(event.publisher_id, event.event_type))
                    .unwrap_or_default();
                async move {
                    (
                        i,
                        reconcile_event(client, event, wanted, settings, dry_run).await,
                    )
                }
            })
            .buffer_unordered(EVENT_CONCURRENCY)
            .collect()
            .await;
    reports.sort_by_key(|(i, _)| *i);
    SubscriptionReport {
        dry_run,
        error: None,
        events: reports.into_iter().map(|(_, r)| r).collect(),
    }
}

enum Action {
    Create(DesiredSubscription),
    Replace(String, DesiredSubscription),
    Delete(String),
}

async fn reconcile_event(
    client: &AdoClient,
    event: &'static EventSpec,
    wanted: Vec<DesiredSubscription>,
    settings: &SubscriptionSettings,
    dry_run: bool,
) -> EventReport {
    let mut report = EventReport {
        publisher_id: event.publisher_id.into(),
        event_type: event.event_type.into(),
        ..Default::default()
    };
    // Always filtered: an unfiltered list is 12+ MB on large orgs and times out after 60 s.
    let list = Request::get("/_apis/hooks/subscriptions")
        .service(event.service)
        .version(event.api_version())
        .query("publisherId", event.publisher_id)
        .query("eventType", event.event_type)
        .query("consumerId", "webHooks");
    let existing = match client.send(&list).await {
        Ok(reply) => super::paging::take_items(reply.body, "value"),
        Err(e) => {
            // Nothing is created or deleted blind: a create could duplicate one we could not see.
            report.failed = wanted.len().max(1);
            report.errors.push(format!("listing failed: {e}"));
            return report;
        }
    };
    let actions = plan_event(event, wanted, existing, settings, &mut report);
    for action in actions {
        if dry_run {
            match action {
                Action::Create(_) => report.created += 1,
                Action::Replace(..) => report.updated += 1,
                Action::Delete(_) => report.deleted += 1,
            }
            continue;
        }
        let path_of = |id: &str| format!("/_apis/hooks/subscriptions/{id}");
        let outcome = match &action {
            // A create that times out after ADO stored it is retried by the client and may leave a
            // duplicate; the next sync keeps one and deletes the rest.
            Action::Create(d) => client
                .send(
                    &Request::post("/_apis/hooks/subscriptions", d.body(settings))
                        .service(event.service)
                        .version(event.api_version()),
                )
                .await
                .map(|r| {
                    report.created += 1;
                    r.body.get("id").and_then(Value::as_str).map(str::to_owned)
                }),
            Action::Replace(id, d) => {
                let mut body = d.body(settings);
                body["id"] = json!(id);
                // A replace also brings a subscription on probation or disabled by the system back.
                body["status"] = json!("enabled");
                client
                    .send(
                        &Request::put(path_of(id), body)
                            .service(event.service)
                            .version(event.api_version()),
                    )
                    .await
                    .map(|_| {
                        report.updated += 1;
                        Some(id.clone())
                    })
            }
            Action::Delete(id) => match client
                .send(
                    &Request::delete(path_of(id))
                        .service(event.service)
                        .version(event.api_version()),
                )
                .await
            {
                // Gone already (a parallel sync, or a person): that is what we wanted.
                Ok(_) | Err(AdoError::NotFound(_)) => {
                    report.deleted += 1;
                    Ok(Some(id.clone()))
                }
                Err(e) => Err(e),
            },
        };
        let verb = match &action {
            Action::Create(_) => "create",
            Action::Replace(..) => "replace",
            Action::Delete(_) => "delete",
        };
        match outcome {
            Ok(id) => tracing::info!(
                event = event.event_type,
                action = verb,
                subscription = id.as_deref().unwrap_or(""),
                "service-hook subscription reconciled"
            ),
            Err(e) => {
                tracing::warn!(event = event.event_type, action = verb, error = %e, "service-hook subscription change failed");
                report.failed += 1;
                report.errors.push(format!("{verb} failed: {e}"));
            }
        }
    }
    report
}

/// Decides one event's actions from what exists (pure). Counts unchanged subscriptions in `report`.
fn plan_event(
    event: &EventSpec,
    wanted: Vec<DesiredSubscription>,
    existing: Vec<Value>,
    settings: &SubscriptionSettings,
    report: &mut EventReport,
) -> Vec<Action> {
    // Servers that ignore a filter must not make us touch other events' subscriptions.
    let mut ours: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for s in existing {
        let same_event = s.get("publisherId").and_then(Value::as_str) == Some(event.publisher_id)
            && s.get("eventType").and_then(Value::as_str) == Some(event.event_type);
        if same_event && settings.is_ours(&s) && sub_id(&s).is_some() {
            ours.entry(project_of(&s)).or_default().push(s);
        }
    }
    let mut actions = Vec::new();
    for d in wanted {
        let key = d.project_id.as_deref().map(str::to_ascii_lowercase);
        let mut candidates = ours.remove(&key).unwrap_or_default();
        if candidates.is_empty() {
            actions.push(Action::Create(d));
            continue;
        }
        let desired_body = d.body(settings);
        // Keep the one that needs no change if there is one; duplicates (a retried create) go.
        let keep = candidates
            .iter()
            .position(|s| differences(s, &desired_body).is_empty())
            .unwrap_or(0);
        let keeper = candidates.swap_remove(keep);
        for dup in candidates {
            actions.extend(sub_id(&dup).map(Action::Delete));
        }
        let id = sub_id(&keeper).expect("filtered above");
        let diffs = differences(&keeper, &desired_body);
        // A rotated credential shows as a different URL: its fingerprint is registered there, since ADO
        // masks the credentials themselves when a subscription is read.
        if !diffs.is_empty() {
            tracing::info!(event = event.event_type, subscription = %id, differs = ?diffs, "subscription will be replaced");
            actions.push(Action::Replace(id, d));
        } else {
            report.unchanged += 1;
        }
    }
    // Ours that nothing wants: an old URL's project, a vanished project, a retired event.
    for (_, rest) in ours {
        actions.extend(rest.iter().filter_map(sub_id).map(Action::Delete));
    }
    actions
}

/// A subscription's id, which goes into the replace and delete paths: only a GUID (what Azure DevOps
/// issues) is used, so an odd answer is never touched rather than steering a DELETE elsewhere.
fn sub_id(s: &Value) -> Option<String> {
    s.get("id")
        .and_then(Value::as_str)
        .and_then(|id| super::Guid::parse(id).ok())
        .map(|id| id.to_string())
}

fn project_of(s: &Value) -> Option<String> {
    s.pointer("/publisherInputs/projectId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase)
}

/// Publisher inputs ADO adds by itself on create; they are not filters and never differ meaningfully.
const GENERATED_PUBLISHER_INPUTS: &[&str] = &["hostId", "tfsSubscriptionId"];
/// Consumer inputs compared as plain values (the secret ones are masked on read and cannot be).
const COMPARED_CONSUMER_INPUTS: &[&str] = &[
    "url",
    "basicAuthUsername",
    "resourceDetailsToSend",
    "messagesToSend",
    "detailedMessagesToSend",
];

/// What differs between an existing subscription and the desired body, by field name (never values).
fn differences(existing: &Value, desired: &Value) -> Vec<&'static str> {
    let mut out = Vec::new();
    if existing.get("status").and_then(Value::as_str) != Some("enabled") {
        out.push("status");
    }
    for key in ["resourceVersion", "consumerActionId"] {
        if existing.get(key) != desired.get(key) {
            out.push(key);
        }
    }
    let filters = |v: &Value| -> BTreeMap<String, String> {
        v.get("publisherInputs")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| !GENERATED_PUBLISHER_INPUTS.contains(&k.as_str()))
            .filter_map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                // ADO ids are case-insensitive GUIDs and empty filters mean "any".
                (!v.is_empty()).then(|| (k.clone(), v.to_ascii_lowercase()))
            })
            .collect()
    };
    if filters(existing) != filters(desired) {
        out.push("publisherInputs");
    }
    for key in COMPARED_CONSUMER_INPUTS {
        let get = |v: &Value| {
            v.get("consumerInputs")
                .and_then(|c| c.get(*key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        if get(existing) != get(desired) {
            out.push(key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<SubscriptionSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SubscriptionSettings::from_lookup(|k| map.get(k).cloned())
    }

    fn full() -> SubscriptionSettings {
        settings(&[
            (
                "WEBHOOK_URL",
                "https://hooks.example.com/webhook?stage=prod",
            ),
            ("WEBHOOK_USERNAME", "ado"),
            ("WEBHOOK_SECRET", "s3cret-password"),
            ("WEBHOOK_HEADER_NAME", "X-Hook-Key"),
            ("WEBHOOK_HEADER_SECRET", "header-secret-value"),
            ("INTEGRATION_IDENTIFIER", "my-ado"),
        ])
        .unwrap()
    }

    #[test]
    fn the_catalogue_has_the_peers_23_events_plus_four() {
        assert_eq!(CATALOGUE.len(), 27);
        let mut pairs: Vec<_> = CATALOGUE
            .iter()
            .map(|e| (e.publisher_id, e.event_type))
            .collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), 27, "no duplicates");
        for extra in [
            "git.repo.deleted",
            "git.repo.statuschanged",
            "git.repo.renamed",
            "git.pullrequest.merged",
        ] {
            assert!(CATALOGUE.iter().any(|e| e.event_type == extra), "{extra}");
        }
    }

    #[test]
    fn versions_and_hosts_are_pinned_per_publisher() {
        for e in CATALOGUE.iter() {
            let (version, service) = match e.publisher_id {
                "tfs" => ("1.0", Service::Core),
                "pipelines" => ("5.1-preview.1", Service::Core),
                "rm" => ("3.0-preview.1", Service::Release),
                "advsec" => ("1.0", Service::AdvancedSecurity),
                other => panic!("unexpected publisher {other}"),
            };
            assert_eq!(e.resource_version, version, "{}", e.event_type);
            assert_eq!(e.service, service, "{}", e.event_type);
        }
    }

    #[test]
    fn org_scope_wants_one_subscription_per_event_without_publisher_inputs() {
        let plan = desired_subscriptions(SubscriptionScope::Org, &["p1".into()], true);
        assert_eq!(plan.len(), 27);
        assert!(plan.iter().all(|d| d.project_id.is_none()));
        let body = plan[0].body(&full());
        assert_eq!(body["publisherInputs"], json!({}));

        // A server has no Services-only events.
        let server = desired_subscriptions(SubscriptionScope::Org, &[], false);
        assert_eq!(server.len(), 27 - 5);
        assert!(server.iter().all(|d| d.event.publisher_id != "advsec"));
    }

    #[test]
    fn project_scope_wants_one_subscription_per_event_and_project() {
        let projects = vec!["p1".to_string(), "p2".to_string()];
        let plan = desired_subscriptions(SubscriptionScope::PerProject, &projects, true);
        assert_eq!(plan.len(), 54);
        let push: Vec<_> = plan
            .iter()
            .filter(|d| d.event.event_type == "git.push")
            .collect();
        assert_eq!(push.len(), 2);
        assert_eq!(
            push[1].body(&full())["publisherInputs"],
            json!({"projectId": "p2"})
        );
        assert!(desired_subscriptions(SubscriptionScope::PerProject, &[], true).is_empty());
    }

    #[test]
    fn the_body_carries_the_marker_credentials_headers_and_full_details() {
        let s = full();
        let release = CATALOGUE
            .iter()
            .find(|e| e.event_type == "ms.vss-release.release-created-event")
            .unwrap();
        assert_eq!(release.service, Service::Release);
        let body = DesiredSubscription {
            event: release,
            project_id: None,
        }
        .body(&s);
        assert_eq!(body["publisherId"], "rm");
        assert_eq!(body["resourceVersion"], "3.0-preview.1");
        assert_eq!(body["consumerId"], "webHooks");
        assert_eq!(body["consumerActionId"], "httpRequest");
        let ci = &body["consumerInputs"];
        let fingerprint = s.credential_fingerprint().unwrap();
        assert_eq!(
            ci["url"],
            format!(
                "https://hooks.example.com/webhook?stage=prod&integration=my-ado&credentials={fingerprint}"
            )
        );
        assert_eq!(fingerprint.len(), 16);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(ci["basicAuthUsername"], "ado");
        assert_eq!(ci["basicAuthPassword"], "s3cret-password");
        assert_eq!(ci["httpHeaders"], "X-Hook-Key:header-secret-value");
        assert_eq!(ci["resourceDetailsToSend"], "all");
        assert_eq!(ci["messagesToSend"], "none");
        assert_eq!(ci["detailedMessagesToSend"], "none");
    }

    #[test]
    fn ours_is_recognised_by_the_marker_on_any_host() {
        let s = full();
        let sub = |url: &str| json!({"consumerInputs": {"url": url}});
        assert!(s.is_ours(&sub(
            "https://old-gateway.example.net/prod/webhook?integration=my-ado"
        )));
        assert!(!s.is_ours(&sub(
            "https://hooks.example.com/webhook?integration=someone-else"
        )));
        assert!(!s.is_ours(&sub("https://hooks.example.com/webhook")));
        assert!(!s.is_ours(&json!({"consumerInputs": {}})));
        // An existing marker in the configured URL is replaced, not doubled.
        let s = settings(&[("WEBHOOK_URL", "https://h.example/w?integration=x&a=1")]).unwrap();
        assert_eq!(
            s.registered_url().as_str(),
            "https://h.example/w?a=1&integration=ado-sync"
        );
    }

    #[test]
    fn settings_name_what_is_missing_or_wrong() {
        let e = settings(&[]).unwrap_err().to_string();
        assert!(e.contains("WEBHOOK_URL"), "{e}");
        let e = settings(&[("WEBHOOK_URL", "ftp://x/y")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WEBHOOK_URL"), "{e}");
        let e = settings(&[("WEBHOOK_URL", "https://x"), ("WEBHOOK_HEADER_NAME", "X-K")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WEBHOOK_HEADER_SECRET"), "{e}");
        let e = settings(&[
            ("WEBHOOK_URL", "https://x"),
            ("WEBHOOK_HEADER_NAME", "Bad Name"),
            ("WEBHOOK_HEADER_SECRET", "v"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("WEBHOOK_HEADER_NAME"), "{e}");
        let e = settings(&[
            ("WEBHOOK_URL", "https://x"),
            ("SUBSCRIPTIONS_SCOPE", "team"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("SUBSCRIPTIONS_SCOPE"), "{e}");

        let s = settings(&[
            ("WEBHOOK_URL", "https://x/hook"),
            ("WEBHOOK_SECRET", "pw"),
            ("SUBSCRIPTIONS_SCOPE", "Project"),
        ])
        .unwrap();
        assert_eq!(s.scope, SubscriptionScope::PerProject);
        assert_eq!(s.username.as_deref(), Some(DEFAULT_WEBHOOK_USERNAME));
        assert!(s.has_credentials());
        let none = settings(&[("WEBHOOK_URL", "https://x/hook")]).unwrap();
        assert_eq!(none.scope, SubscriptionScope::Org);
        assert!(none.username.is_none() && !none.has_credentials());
        assert!(
            SubscriptionSettings::from_lookup_if_set(|_| None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let s = full();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret-password"), "{dbg}");
        assert!(!dbg.contains("header-secret-value"), "{dbg}");
        assert!(dbg.contains("X-Hook-Key"), "{dbg}");
    }

    /// A listed subscription; its id is a GUID made of the letter `id` (`kinds` shows the letter).
    fn existing(id: &str, body: &Value, status: &str) -> Value {
        let mut v = body.clone();
        v["id"] = json!(format!("{}-0000-4000-8000-000000000000", id.repeat(8)));
        v["status"] = json!(status);
        v["consumerInputs"]["basicAuthPassword"] = json!("********");
        v["publisherInputs"]["hostId"] = json!("0000-host");
        v
    }

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Create(d) => format!("create {:?}", d.project_id),
                Action::Replace(id, _) => format!("replace {}", &id[..1]),
                Action::Delete(id) => format!("delete {}", &id[..1]),
            })
            .collect()
    }

    #[test]
    fn plan_keeps_matches_replaces_drift_and_deletes_what_nobody_wants() {
        let no_creds = settings(&[("WEBHOOK_URL", "https://h.example/w")]).unwrap();
        let event = CATALOGUE
            .iter()
            .find(|e| e.event_type == "git.push")
            .unwrap();
        let want = |p: &str| DesiredSubscription {
            event,
            project_id: Some(p.into()),
        };
        let body_p1 = want("p1").body(&no_creds);
        let body_p2 = want("p2").body(&no_creds);
        let mut old_url = want("p3").body(&no_creds);
        old_url["consumerInputs"]["url"] = json!("https://old.example/w?integration=ado-sync");
        let mut foreign = want("p1").body(&no_creds);
        foreign["consumerInputs"]["url"] = json!("https://someone.example/hook");

        let mut report = EventReport::default();
        let actions = plan_event(
            event,
            vec![want("p1"), want("p2"), want("p4")],
            vec![
                existing("a", &body_p1, "enabled"),
                existing("b", &body_p2, "disabledBySystem"),
                existing("c", &old_url, "enabled"),
                existing("d", &foreign, "enabled"),
                existing("e", &body_p1, "enabled"),
            ],
            &no_creds,
            &mut report,
        );
        assert_eq!(
            kinds(&actions),
            vec!["delete e", "replace b", "create Some(\"p4\")", "delete c"]
        );
        assert_eq!(report.unchanged, 1);

        // With credentials, a match with the same fingerprint is left alone (ADO masks the
        // credentials on read); a rotated one differs in its URL and is replaced.
        let creds = |secret: &str| {
            settings(&[
                ("WEBHOOK_URL", "https://h.example/w"),
                ("WEBHOOK_SECRET", secret),
            ])
            .unwrap()
        };
        let mut masked = existing("a", &want("p1").body(&creds("x")), "enabled");
        masked["consumerInputs"]["basicAuthPassword"] = json!("********");
        let plan = |settings: &SubscriptionSettings| {
            let mut report = EventReport::default();
            let actions = plan_event(
                event,
                vec![want("p1")],
                vec![masked.clone()],
                settings,
                &mut report,
            );
            (kinds(&actions), report.unchanged)
        };
        assert_eq!(plan(&creds("x")), (vec![], 1));
        assert_eq!(plan(&creds("rotated")), (vec!["replace a".to_owned()], 0));
    }

    #[test]
    fn a_listed_subscription_whose_id_is_not_a_guid_is_never_replaced_or_deleted() {
        let s = settings(&[("WEBHOOK_URL", "https://h.example/w")]).unwrap();
        let event = &CATALOGUE[0];
        let body = DesiredSubscription {
            event,
            project_id: None,
        }
        .body(&s);
        let unwanted = existing("a", &body, "enabled");
        let mut report = EventReport::default();
        let actions = plan_event(event, vec![], vec![unwanted.clone()], &s, &mut report);
        assert_eq!(kinds(&actions), ["delete a"]);
        let mut odd = unwanted;
        odd["id"] = json!("../../_apis/projects/x?");
        let actions = plan_event(event, vec![], vec![odd], &s, &mut report);
        assert!(actions.is_empty(), "{:?}", kinds(&actions));
    }

    #[test]
    fn differences_ignore_generated_inputs_and_masked_secrets() {
        let s = full();
        let event = &CATALOGUE[0];
        let body = DesiredSubscription {
            event,
            project_id: None,
        }
        .body(&s);
        let mut e = existing("a", &body, "enabled");
        e["consumerInputs"]["httpHeaders"] = json!("X-Hook-Key:********");
        e["publisherInputs"]["tfsSubscriptionId"] = json!("123");
        assert!(differences(&e, &body).is_empty());
        e["status"] = json!("onProbation");
        e["resourceVersion"] = json!("2.0");
        e["publisherInputs"]["branch"] = json!("main");
        e["consumerInputs"]["url"] = json!("https://elsewhere/?integration=my-ado");
        assert_eq!(
            differences(&e, &body),
            vec!["status", "resourceVersion", "publisherInputs", "url"]
        );
    }
}
