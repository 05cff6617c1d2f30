//! Route: the approval lifecycle, enrichment from the WeCom API, and fan-out to one delivery
//! job per (event, mapping, connector) on that connector's deliver queue.
//!
//! For an approval event it decides, per form, whether this event is an action we forward:
//! the first time the form is seen approved (`SpStatus` 2) → `approved`; revoked after we
//! forwarded it (`SpStatus` 6) → `revoked`; anything else is recorded, not forwarded. For an
//! action it fetches the detail (`oa/getapprovaldetail`), checks the detail's status caught
//! up with the callback (it can lag; then it retries later), normalises it, and publishes one
//! job per matching mapping, each with a deterministic idempotency key. Only then does it mark
//! the form forwarded and acknowledge. A crash in between republishes the same jobs with the
//! same keys, which the deliver stage recognises. Jobs go to one queue per connector, so one
//! failing target never holds back another.
//!
//! It must not build target documents (the mapping engine does) or talk to targets.

pub mod reconcile;
pub mod reroute;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::broker::{Broker, Delivery, ENVELOPE_VERSION, Envelope, ROUTE_QUEUE};
use crate::catalog::{Action, Catalog, RouteInput};
use crate::config::{Config, ResolvedSecrets};
use crate::store::{FormState, Forwarded, Store};
use crate::wecom::api::{ApiConfig, ApiError, Credentials, WeComApi};
use crate::wecom::approval::normalise;
use crate::wecom::event::{InboundEvent, parse_event};

/// Deliveries of one route event before it is parked as a dead letter.
pub const MAX_ATTEMPTS: u32 = 12;

/// The deliver queue of a connector.
pub fn deliver_queue(connector: &str) -> String {
    format!("deliver.{connector}")
}

/// A unit of work for the deliver stage: one event, one mapping, one connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Deterministic: the same event, mapping and action always give the same key. Sent to
    /// the target so that it can refuse duplicates.
    pub idempotency_key: String,
    /// The mapping that builds the target document.
    pub mapping: String,
    /// The connector that sends it.
    pub connector: String,
    /// `approved`, `revoked` or `changed`.
    pub action: Action,
    /// The event that caused it.
    pub event_id: String,
    /// The app it came from.
    pub app: String,
    /// Business key (the SpNo for approvals).
    pub business_key: String,
    /// The input of the mapping: the normalised approval instance, or the contact event (with
    /// the directory's record where it could be fetched).
    pub document: serde_json::Value,
}

/// The idempotency key of a job.
pub fn idempotency_key(app: &str, business: &str, mapping: &str, action: Action) -> String {
    let mut h = Sha256::new();
    for part in [app, business, mapping, action.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("job_{}", hex::encode(&h.finalize()[..16]))
}

/// The lifecycle decision for an approval event: which action (if any) to forward.
pub fn decide(state: &FormState, status: u32) -> Option<Action> {
    match status {
        2 if state.approved_forwarded_at_ms.is_none() => Some(Action::Approved),
        6 if state.approved_forwarded_at_ms.is_some()
            && state.revoked_forwarded_at_ms.is_none() =>
        {
            Some(Action::Revoked)
        }
        _ => None,
    }
}

/// API access of one app.
#[derive(Debug, Clone)]
pub struct AppAccess {
    /// Credentials, when the app's secret is configured.
    pub credentials: Option<Credentials>,
}

/// Everything the route stage needs, built once at start.
#[derive(Debug, Clone)]
pub struct RouteContext {
    /// Mappings and connectors.
    pub catalog: Arc<Catalog>,
    /// The WeCom API client.
    pub api: WeComApi,
    /// Per app.
    pub apps: HashMap<String, AppAccess>,
    /// The corp's time zone.
    pub tz: jiff::tz::TimeZone,
    /// The store (form states).
    pub store: Store,
}

/// Why a route context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouteSetupError {
    /// The catalog has errors.
    #[error("mappings/connectors are invalid:\n  {}", .0.join("\n  "))]
    Catalog(Vec<String>),
    /// Other configuration problems.
    #[error("{0}")]
    Config(String),
}

impl RouteContext {
    /// Loads the catalog, takes the app secrets resolved at start, and builds the API client.
    pub fn from_config(
        config: &Config,
        secrets: &ResolvedSecrets,
        store: Store,
    ) -> Result<Self, RouteSetupError> {
        let catalog =
            crate::catalog::load(&config.catalog.mappings_dir, &config.catalog.connectors_dir)
                .map_err(|e| {
                    RouteSetupError::Catalog(e.iter().map(ToString::to_string).collect())
                })?;
        let api = WeComApi::new(ApiConfig {
            base_url: config.wecom.api_base_url.clone(),
            timeout: Duration::from_secs(config.wecom.timeout_secs),
            approval_calls_per_minute: config.wecom.approval_calls_per_minute,
            ..ApiConfig::default()
        })
        .map_err(|e| RouteSetupError::Config(e.to_string()))?;
        let apps = config
            .apps
            .iter()
            .map(|(name, app)| {
                let corp = app
                    .corp_id
                    .clone()
                    .unwrap_or_else(|| app.receive_ids[0].clone());
                let credentials = secrets.apps[name]
                    .secret
                    .clone()
                    .map(|s| Credentials::new(corp, s));
                (name.clone(), AppAccess { credentials })
            })
            .collect();
        let tz = jiff::tz::TimeZone::get(&config.wecom.time_zone)
            .map_err(|e| RouteSetupError::Config(format!("wecom.time_zone: {e}")))?;
        Ok(RouteContext {
            catalog: Arc::new(catalog),
            api,
            apps,
            tz,
            store,
        })
    }
}

/// How handling an event failed.
#[derive(Debug)]
enum Failure {
    /// Try again after this delay.
    Later(Duration, String),
    /// Park it: retrying cannot help until an operator acts.
    Park(String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        if e.is_retryable() {
            Failure::Later(Duration::from_secs(5), format!("WeCom API: {e}"))
        } else {
            Failure::Park(format!("WeCom API: {e}"))
        }
    }
}

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::Later(Duration::from_secs(2), format!("store: {e}"))
}

/// Consumes the route queue until `shutdown` turns true, re-subscribing after broker errors.
pub async fn run<B: Broker>(
    broker: B,
    ctx: Arc<RouteContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(200);
    while !*shutdown.borrow() {
        let mut consumer = match broker.consume(ROUTE_QUEUE).await {
            Ok(c) => {
                delay = Duration::from_millis(200);
                c
            }
            Err(e) => {
                tracing::warn!(queue = ROUTE_QUEUE, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot consume; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(d)) => settle(&broker, &ctx, d).await,
                    Some(Err(e)) => {
                        tracing::warn!(queue = ROUTE_QUEUE, error = %e, "consumer error; re-subscribing");
                        break;
                    }
                    None => break,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn settle<B: Broker>(broker: &B, ctx: &RouteContext, d: B::Delivery) {
    let env = d.envelope().clone();
    let attempt = d.attempt();
    let result = handle(broker, ctx, &env).await;
    let settled = match result {
        Ok(outcome) => {
            metrics::counter!("wecom_bridge_route_events_total", "kind" => env.kind.clone(), "outcome" => outcome)
                .increment(1);
            d.ack().await
        }
        Err(Failure::Later(_, reason)) if attempt >= MAX_ATTEMPTS => {
            tracing::error!(event_id = %env.id, business_key = %env.business_key, attempt, %reason,
                "giving up after {MAX_ATTEMPTS} attempts; parked (`wecom-bridge dead-letters`, then `replay`)");
            metrics::counter!("wecom_bridge_route_events_total", "kind" => env.kind.clone(), "outcome" => "dead_letter").increment(1);
            d.dead_letter(&format!("{reason} (after {attempt} attempts)"))
                .await
        }
        Err(Failure::Later(base, reason)) => {
            let delay = (base * 2u32.saturating_pow(attempt.saturating_sub(1).min(8)))
                .min(Duration::from_secs(600));
            tracing::warn!(event_id = %env.id, business_key = %env.business_key, attempt, retry_in_s = delay.as_secs(), %reason, "route failed; will retry");
            metrics::counter!("wecom_bridge_route_events_total", "kind" => env.kind.clone(), "outcome" => "retry").increment(1);
            d.retry_after(delay).await
        }
        Err(Failure::Park(reason)) => {
            tracing::error!(event_id = %env.id, business_key = %env.business_key, attempt, %reason,
                "cannot be routed until an operator acts; parked (`wecom-bridge dead-letters`, then `replay`)");
            metrics::counter!("wecom_bridge_route_events_total", "kind" => env.kind.clone(), "outcome" => "dead_letter").increment(1);
            d.dead_letter(&reason).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(event_id = %env.id, error = %e, "settling failed; the event will be delivered again (handling is idempotent)");
    }
}

/// Handles one route message; returns the outcome label.
async fn handle<B: Broker>(
    broker: &B,
    ctx: &RouteContext,
    env: &Envelope,
) -> Result<&'static str, Failure> {
    let event = match parse_event(&env.payload) {
        Ok(e) => e,
        Err(e) => return Err(Failure::Park(format!("event XML cannot be parsed: {e}"))),
    };
    match event {
        InboundEvent::ApprovalChange(a) => {
            let (app, sp_no, status) = (env.app.clone(), a.sp_no.clone(), a.sp_status);
            let store = ctx.store.clone();
            let state = blocking(move || store.form_observe(&app, &sp_no, status)).await?;
            let Some(action) = decide(&state, a.sp_status) else {
                tracing::debug!(sp_no = %a.sp_no, status = a.sp_status, "approval event recorded; not an action we forward");
                return Ok("recorded");
            };
            let input = RouteInput::Approval {
                app: &env.app,
                template_id: &a.template_id,
                template_name: &a.sp_name,
                action,
            };
            let routes = ctx.catalog.routes(&input);
            if routes.is_empty() {
                tracing::info!(sp_no = %a.sp_no, template_id = %a.template_id, template = %a.sp_name, action = action.as_str(),
                    "no mapping matches this template: not forwarded (add one under mappings/ to route it)");
                return Ok("unrouted");
            }
            let credentials = ctx
                .apps
                .get(&env.app)
                .and_then(|a| a.credentials.clone())
                .ok_or_else(|| Failure::Park(format!(
                    "apps.{}.secret is not configured, so the approval detail cannot be fetched; set it, then replay",
                    env.app
                )))?;
            let info = ctx.api.approval_detail(&credentials, &a.sp_no).await?;
            let instance = normalise(&info, &ctx.tz)
                .map_err(|e| Failure::Park(format!("approval detail cannot be normalised: {e}")))?;
            let caught_up = instance.status == a.sp_status
                || (action == Action::Approved && matches!(instance.status, 6 | 7 | 10));
            if !caught_up {
                return Err(Failure::Later(
                    Duration::from_secs(5),
                    format!(
                        "detail shows status {} but the callback said {}; the detail lags, retrying",
                        instance.status, a.sp_status
                    ),
                ));
            }
            let document = instance.to_document();
            let jobs: Vec<DeliveryJob> = routes
                .iter()
                .map(|m| DeliveryJob {
                    idempotency_key: idempotency_key(&env.app, &a.sp_no, &m.name, action),
                    mapping: m.name.clone(),
                    connector: m.connector.clone(),
                    action,
                    event_id: env.id.clone(),
                    app: env.app.clone(),
                    business_key: a.sp_no.clone(),
                    document: document.clone(),
                })
                .collect();
            publish_jobs(broker, env, &jobs).await?;
            let (app, sp_no) = (env.app.clone(), a.sp_no.clone());
            let store = ctx.store.clone();
            let mark = match action {
                Action::Revoked => Forwarded::Revoked,
                _ => Forwarded::Approved,
            };
            blocking(move || {
                store.form_mark_forwarded(&app, &sp_no, mark, crate::broker::now_ms())
            })
            .await?;
            tracing::info!(sp_no = %a.sp_no, action = action.as_str(), jobs = jobs.len(), "approval forwarded");
            Ok(if action == Action::Revoked {
                "revoked"
            } else {
                "approved"
            })
        }
        InboundEvent::ContactChange(c) => {
            let input = RouteInput::Contact {
                app: &env.app,
                change_type: &c.change_type,
            };
            let routes = ctx.catalog.routes(&input);
            if routes.is_empty() {
                return Ok("unrouted");
            }
            let mut document =
                serde_json::json!({ "event": InboundEvent::ContactChange(c.clone()) });
            if let (Some(user_id), false) = (c.user_id.as_deref(), c.change_type == "delete_user")
                && let Some(creds) = ctx.apps.get(&env.app).and_then(|a| a.credentials.clone())
            {
                document["user"] = ctx.api.user(&creds, user_id).await?;
            }
            fan_out_changed(broker, env, &routes, document).await
        }
        InboundEvent::ExternalContactChange(x) => {
            let input = RouteInput::ExternalContact {
                app: &env.app,
                change_type: &x.change_type,
            };
            let routes = ctx.catalog.routes(&input);
            if routes.is_empty() {
                return Ok("unrouted");
            }
            let mut document =
                serde_json::json!({ "event": InboundEvent::ExternalContactChange(x.clone()) });
            if !x.change_type.starts_with("del_")
                && let Some(creds) = ctx.apps.get(&env.app).and_then(|a| a.credentials.clone())
            {
                document["customer"] = ctx
                    .api
                    .external_contact(&creds, &x.external_user_id)
                    .await?;
            }
            fan_out_changed(broker, env, &routes, document).await
        }
        InboundEvent::OpenApprovalChange(_) | InboundEvent::Other(_) => Ok("not_routed_kind"),
    }
}

async fn fan_out_changed<B: Broker>(
    broker: &B,
    env: &Envelope,
    routes: &[&crate::catalog::Mapping],
    document: serde_json::Value,
) -> Result<&'static str, Failure> {
    let jobs: Vec<DeliveryJob> = routes
        .iter()
        .map(|m| DeliveryJob {
            // every contact event is its own change: the event id makes the key unique to it
            idempotency_key: idempotency_key(&env.app, &env.id, &m.name, Action::Changed),
            mapping: m.name.clone(),
            connector: m.connector.clone(),
            action: Action::Changed,
            event_id: env.id.clone(),
            app: env.app.clone(),
            business_key: env.business_key.clone(),
            document: document.clone(),
        })
        .collect();
    publish_jobs(broker, env, &jobs).await?;
    Ok("changed")
}

async fn publish_jobs<B: Broker>(
    broker: &B,
    env: &Envelope,
    jobs: &[DeliveryJob],
) -> Result<(), Failure> {
    for job in jobs {
        let envelope = Envelope {
            v: ENVELOPE_VERSION,
            id: job.idempotency_key.clone(),
            kind: "delivery_job".into(),
            business_key: job.business_key.clone(),
            app: job.app.clone(),
            created_at_ms: env.created_at_ms,
            payload: serde_json::to_string(job)
                .map_err(|e| Failure::Park(format!("job cannot be encoded: {e}")))?,
        };
        broker
            .publish(&deliver_queue(&job.connector), &envelope)
            .await
            .map_err(|e| {
                Failure::Later(
                    Duration::from_secs(2),
                    format!("publishing the job failed: {e}"),
                )
            })?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_failure(e)),
        Err(e) => Err(store_failure(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_forwards_approved_once_and_revoked_once() {
        // submitted, approver 1 agrees, approved, comment added, paid, revoked, revoked again
        let sequence = [1, 1, 2, 2, 10, 6, 6];
        let mut state = FormState::default();
        let mut actions = Vec::new();
        for status in sequence {
            state.last_status = status;
            if let Some(a) = decide(&state, status) {
                actions.push(a);
                match a {
                    Action::Approved => state.approved_forwarded_at_ms = Some(1),
                    _ => state.revoked_forwarded_at_ms = Some(2),
                }
            }
        }
        assert_eq!(actions, vec![Action::Approved, Action::Revoked]);
    }

    #[test]
    fn revocation_of_a_form_never_forwarded_is_not_forwarded() {
        assert_eq!(decide(&FormState::default(), 6), None);
        assert_eq!(decide(&FormState::default(), 3), None);
    }

    #[test]
    fn idempotency_keys_are_deterministic_and_distinct() {
        let k = idempotency_key("demo", "202506050012", "expense-voucher", Action::Approved);
        assert_eq!(
            k,
            idempotency_key("demo", "202506050012", "expense-voucher", Action::Approved)
        );
        assert_ne!(
            k,
            idempotency_key("demo", "202506050012", "expense-voucher", Action::Revoked)
        );
        assert_ne!(
            k,
            idempotency_key("demo", "202506050012", "other-mapping", Action::Approved)
        );
        assert!(k.starts_with("job_") && k.len() == 36);
    }
}
