//! `advanced-security-alert`: the alerts of each healthy repository, on the Advanced Security host,
//! filtered by the selector's `criteria`; followed live through the alert events.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::listing::{healthy_repos_first_alone, put, repo_project};
use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::parent::{Recheck, recheck_parent, repository_request};
use super::{
    Block, FetchContext, Kind, OptionError, PAGE_SIZE, PageSink, SelectorOptions, str_field,
};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoError, ApiVersion, Request, Service};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

fn alert_changed(r: &Value) -> Result<Change, live::Unnamed> {
    Ok(Change::SecurityAlert {
        repository_id: live::repository_id(
            r,
            &[
                &["repositoryId"],
                &["repository", "id"],
                &["alert", "repositoryId"],
            ],
        )?,
        alert_id: live::required_number(
            r,
            &[&["alertId"], &["alert", "alertId"], &["alert", "id"]],
            "alert id",
        )?,
    })
}

static ALERT_CREATED: LiveEvent = LiveEvent {
    spec: EventSpec::advanced_security("ms.vss-alerts.alert-created-event"),
    name: alert_changed,
};
static ALERT_STATE_CHANGED: LiveEvent = LiveEvent {
    spec: EventSpec::advanced_security("ms.vss-alerts.alert-state-changed-event"),
    name: alert_changed,
};
static ALERT_UPDATED: LiveEvent = LiveEvent {
    spec: EventSpec::advanced_security("ms.vss-alerts.alert-updated-event"),
    name: alert_changed,
};
static ALERT_EVENTS: [&LiveEvent; 3] = [&ALERT_CREATED, &ALERT_STATE_CHANGED, &ALERT_UPDATED];

/// The only version the Advanced Security alerts API serves.
pub(crate) const ADVSEC_VERSION: &str = "7.2-preview.1";
const STATES: &[&str] = &["active", "dismissed", "fixed", "autoDismissed"];
const SEVERITIES: &[&str] = &[
    "low", "medium", "high", "critical", "note", "warning", "error",
];
const ALERT_TYPES: &[&str] = &["dependency", "code", "secret"];

/// `criteria` {states, severity, alertType}, as ADO query keys: the kind's options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Criteria {
    pub states: Vec<String>,
    pub severities: Vec<String>,
    pub alert_type: Option<String>,
}

impl SelectorOptions for Criteria {
    const NAMES: &'static [&'static str] = &["criteria"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Self::read(selector)
    }
}

impl Criteria {
    fn read(selector: &Selector) -> Result<Self, OptionError> {
        let refuse = |message: String| OptionError::new("criteria", message);
        let Some(raw) = selector.options.get("criteria").filter(|v| !v.is_null()) else {
            return Ok(Self::default());
        };
        let obj = raw.as_object().ok_or_else(|| {
            refuse("criteria must be an object with states, severity and alertType".into())
        })?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["states", "severity", "alertType"].contains(&k.as_str()))
        {
            return Err(refuse(format!(
                "criteria has an unknown key {k:?} (allowed: states, severity, alertType)"
            )));
        }
        let list = |key: &str, allowed: &[&str]| -> Result<Vec<String>, OptionError> {
            let values: Vec<String> = match obj.get(key) {
                None | Some(Value::Null) => vec![],
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| refuse(format!("criteria.{key} must list strings")))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(refuse(format!("criteria.{key} must be a list"))),
            };
            match values.iter().find(|v| !allowed.contains(&v.as_str())) {
                Some(bad) => Err(refuse(format!(
                    "criteria.{key} has {bad:?}; allowed: {}",
                    allowed.join(", ")
                ))),
                None => Ok(values),
            }
        };
        let alert_type = list("alertType", ALERT_TYPES)?;
        if alert_type.len() > 1 {
            return Err(refuse("criteria.alertType is one type, not a list".into()));
        }
        Ok(Self {
            states: list("states", STATES)?,
            severities: list("severity", SEVERITIES)?,
            alert_type: alert_type.into_iter().next(),
        })
    }

    /// ADO documents the severity filter as `criteria.severities`; the peer's `criteria.severity` is not a
    /// parameter the API knows, so its severity filter is silently ignored there.
    fn apply(&self, mut req: Request) -> Request {
        if !self.states.is_empty() {
            req = req.query("criteria.states", self.states.join(","));
        }
        if !self.severities.is_empty() {
            req = req.query("criteria.severities", self.severities.join(","));
        }
        if let Some(t) = &self.alert_type {
            req = req.query("criteria.alertType", t);
        }
        req
    }

    /// Whether an alert passes the criteria (for live events, which are not filtered by ADO).
    pub(crate) fn admits(&self, alert: &Value) -> bool {
        let is = |key: &str, allowed: &[String]| {
            allowed.is_empty()
                || alert
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| allowed.iter().any(|a| a.eq_ignore_ascii_case(v)))
        };
        is("state", &self.states)
            && is("severity", &self.severities)
            && is("alertType", self.alert_type.as_slice())
    }
}

pub struct AdvancedSecurityAlert;

#[async_trait]
impl Kind for AdvancedSecurityAlert {
    type Options = Criteria;

    fn name(&self) -> &'static str {
        "advanced-security-alert"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        criteria: &Criteria,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        // The first repository is asked alone: on a server without Advanced Security its answer is
        // enough to know, and the other repositories are not asked for nothing.
        healthy_repos_first_alone(ctx, |repo| async move {
            let (project, id) = (
                repo_project(&repo).to_owned(),
                str_field(&repo, "id").to_owned(),
            );
            let req = criteria.apply(
                Request::get(format!("/{project}/_apis/alert/repositories/{id}/alerts"))
                    .service(Service::AdvancedSecurity)
                    .version(ApiVersion::Exact(ADVSEC_VERSION.into())),
            );
            let mut pages = ctx
                .client
                .token_pages(req, Some(PAGE_SIZE), "value")
                .boxed();
            loop {
                match pages.try_next().await {
                    Ok(Some(mut page)) => {
                        for alert in &mut page {
                            enrich_alert(alert, &id, &project);
                        }
                        sink.send(page).await?;
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return unavailable(ctx, e, &repo).await,
                }
            }
        })
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &ALERT_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, Criteria>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Change::SecurityAlert {
            repository_id,
            alert_id,
        } = &message.change
        else {
            return Ok(None);
        };
        if cx.project_of(message).await?.is_none() {
            return Ok(None);
        }
        let Some(project_id) = message.project_id.as_ref() else {
            return Ok(None);
        };
        let (repo, project) = (repository_id.to_string(), project_id.to_string());
        let req = Request::get(format!(
            "/{project}/_apis/alert/repositories/{repo}/alerts/{alert_id}"
        ))
        .service(Service::AdvancedSecurity)
        .version(ApiVersion::Exact(ADVSEC_VERSION.into()));
        // A repository without Advanced Security (400) has no alert.
        let current = match cx.ado.send(&req).await {
            Ok(reply) => Some(reply.body),
            Err(AdoError::NotFound(_)) | Err(AdoError::Invalid(_)) => None,
            Err(e) => {
                return Err(LiveError::Ado {
                    context: format!("{} in project {project_id}", message.event_type),
                    source: e,
                });
            }
        };
        let current = current.map(|mut a| {
            enrich_alert(&mut a, &repo, &project);
            a
        });
        Ok(Some(
            blocks
                .iter()
                .map(|b| {
                    // The listing only returns alerts inside the block's criteria; live, an alert that
                    // left them (fixed, dismissed) must leave the catalog too.
                    let raw = match &current {
                        Some(a) if b.options.admits(a) => RawItem::Current(a.clone()),
                        _ => {
                            // What the listing would have produced for an alert that is gone.
                            let mut gone = json!({ "alertId": alert_id });
                            enrich_alert(&mut gone, &repo, &project);
                            RawItem::Gone(gone)
                        }
                    };
                    (b.resource, raw)
                })
                .collect(),
        ))
    }
}

/// `__repositoryId` and `__projectId`, as the peer adds them; shared with the live read.
fn enrich_alert(alert: &mut Value, repo_id: &str, project_id: &str) {
    put(alert, "__repositoryId", json!(repo_id));
    put(alert, "__projectId", json!(project_id));
}

/// Why a repository's alerts could not be listed.
/// - 400: Advanced Security is not enabled on this repository, which has no alerts (the peer skips it
///   the same way).
/// - 404 while the repository itself still answers: the server has no Advanced Security at all (Azure
///   DevOps Server answers 404 for the whole API), so the kind is [`AdoError::NotAvailable`]. On
///   Azure DevOps Services the API always exists, so there it is an error like any other.
/// - 404 because the repository is gone: it has no alerts left.
/// - A refused api-version: this server does not serve the version the alerts API exists in.
async fn unavailable(ctx: &FetchContext, e: AdoError, repo: &Value) -> Result<(), AdoError> {
    match e {
        AdoError::Invalid(m) if m.mentions("version") => {
            if ctx.on_server().await {
                Err(not_on_this_server(&m.to_string()))
            } else {
                Err(AdoError::Invalid(m))
            }
        }
        AdoError::Invalid(m) if !m.mentions("version") => {
            tracing::debug!(repository = %str_field(repo, "id"), reason = %m, "Advanced Security is not enabled on this repository");
            Ok(())
        }
        e @ AdoError::NotFound(_) => {
            match recheck_parent(&ctx.client, e.clone(), &repository_request(repo)).await? {
                Recheck::ParentGone => Ok(()),
                Recheck::ParentPresent { .. } if ctx.on_server().await => {
                    Err(not_on_this_server(&e.to_string()))
                }
                Recheck::ParentPresent { error, .. } => Err(error),
            }
        }
        other => Err(other),
    }
}

fn not_on_this_server(detail: &str) -> AdoError {
    AdoError::not_available(format!(
        "advanced-security-alert: this server does not serve the Advanced Security alerts API (api-version \
         {ADVSEC_VERSION}); it exists only on Azure DevOps Services with Advanced Security, not on Azure \
         DevOps Server. Remove the kind from the mapping for this organisation ({detail})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::PortAppConfig;

    fn selector(criteria: &str) -> Selector {
        let text = format!(
            "resources:\n  - kind: advanced-security-alert\n    selector:\n      query: 'true'\n      criteria: {criteria}\n    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"x\"'\n"
        );
        PortAppConfig::parse(&text).unwrap().resources[0]
            .selector
            .clone()
    }

    #[test]
    fn criteria_become_the_documented_query_keys() {
        let c = Criteria::read(&selector(
            "{states: [active, dismissed], severity: [high, critical], alertType: code}",
        ))
        .unwrap();
        let req = c.apply(Request::get("/x"));
        assert_eq!(
            req.query,
            vec![
                ("criteria.states".to_owned(), "active,dismissed".to_owned()),
                ("criteria.severities".to_owned(), "high,critical".to_owned()),
                ("criteria.alertType".to_owned(), "code".to_owned()),
            ]
        );
        assert!(c.admits(&json!({"state": "active", "severity": "high", "alertType": "code"})));
        assert!(!c.admits(&json!({"state": "fixed", "severity": "high", "alertType": "code"})));
        assert!(!c.admits(&json!({"state": "active", "severity": "low", "alertType": "code"})));
    }

    #[test]
    fn unknown_criteria_keys_and_values_are_refused() {
        assert!(
            Criteria::read(&selector("{ruleId: 3}"))
                .unwrap_err()
                .to_string()
                .contains("ruleId")
        );
        assert!(
            Criteria::read(&selector("{states: [open]}"))
                .unwrap_err()
                .to_string()
                .contains("open")
        );
        assert_eq!(
            Criteria::read(&selector("null")).unwrap(),
            Criteria::default()
        );
    }
}
