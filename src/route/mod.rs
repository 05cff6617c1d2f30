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

use crate::broker::{Broker, ROUTE_QUEUE};
use crate::catalog::{Action, Catalog, Mapping, RouteInput};
use crate::config::{Config, ConfigError, ResolvedSecrets, StagePlan};
use crate::map::input::{ContactRecord, CustomerRecord, MapInput};
use crate::stage::{DeliveryJob, Disposition, EventId, Handler, JobKey, Message, Shutdown};
use crate::store::{FormState, Forwarded, Store, StoreError};
use crate::wecom::api::{ApiConfig, ApiError, Credentials, WeComApi};
use crate::wecom::approval::normalise;
use crate::wecom::event::{InboundEvent, parse_event};

/// The deliver queue of a connector.
pub fn deliver_queue(connector: &str) -> String {
    format!("deliver.{connector}")
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
    /// The WeCom API client (waits out rate limits; reconciliation uses it as is).
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
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The WeCom API client cannot be built from `[wecom]`.
    #[error("[wecom] settings are unusable")]
    Api(#[source] ApiError),
}

impl RouteContext {
    /// Loads the catalog, takes the app secrets resolved at start and the values validation
    /// built (time zone, corp ids), and builds the API client.
    pub fn from_config(
        config: &Config,
        secrets: &ResolvedSecrets,
        store: Store,
    ) -> Result<Self, RouteSetupError> {
        let checked = config.checked()?;
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
        .map_err(RouteSetupError::Api)?;
        let apps = checked
            .apps
            .iter()
            .map(|(name, app)| {
                let credentials = secrets
                    .apps
                    .get(name)
                    .and_then(|s| s.secret.clone())
                    .map(|s| Credentials::new(app.corp_id.clone(), s));
                (name.clone(), AppAccess { credentials })
            })
            .collect();
        Ok(RouteContext {
            catalog: Arc::new(catalog),
            api,
            apps,
            tz: checked.time_zone.clone(),
            store,
        })
    }
}

/// Consumes the route queue on the shared stage loop until `shutdown`.
pub async fn run<B: Broker>(
    broker: B,
    ctx: Arc<RouteContext>,
    plan: StagePlan,
    shutdown: Shutdown,
) {
    let stage = Arc::new(RouteStage::new(broker.clone(), ctx));
    crate::stage::run(
        broker,
        ROUTE_QUEUE.to_string(),
        stage,
        plan.policy,
        plan.concurrency,
        shutdown,
    )
    .await;
}

/// The route stage as a [`Handler`]: it publishes jobs through `broker`.
#[derive(Debug)]
pub struct RouteStage<B> {
    broker: B,
    ctx: Arc<RouteContext>,
    /// The context's client, handing WeCom's rate-limit wait back as a retry hint.
    api: WeComApi,
}

impl<B: Broker> RouteStage<B> {
    /// A route stage publishing jobs through `broker`.
    pub fn new(broker: B, ctx: Arc<RouteContext>) -> Self {
        let api = ctx.api.returning_rate_limits();
        RouteStage { broker, ctx, api }
    }
}

impl<B: Broker> Handler for RouteStage<B> {
    fn stage(&self) -> &'static str {
        "route"
    }

    async fn handle(&self, msg: Message, _attempt: u32) -> Disposition {
        let event = match msg {
            Message::Event {
                id,
                app,
                business_key,
                received_at_ms,
                xml,
                ..
            } => Received {
                id,
                app,
                business_key,
                received_at_ms,
                xml,
            },
            Message::DeliveryJob(job) => {
                return Disposition::park(format!(
                    "delivery job {} is on the route queue; it belongs on {}",
                    job.key,
                    deliver_queue(&job.connector)
                ));
            }
            Message::Writeback(job) => {
                return Disposition::park(format!(
                    "writeback job {}.{} is on the route queue; it belongs on {}",
                    job.key,
                    job.kind.as_str(),
                    crate::broker::WRITEBACK_QUEUE
                ));
            }
        };
        match self.route(&event).await {
            Ok(outcome) => Disposition::done(outcome),
            Err(d) => d,
        }
    }
}

/// An event taken from the route queue.
struct Received {
    id: EventId,
    app: String,
    business_key: String,
    received_at_ms: i64,
    xml: String,
}

fn api_failure(e: ApiError) -> Disposition {
    if e.is_retryable() {
        Disposition::Retry {
            hint: WeComApi::retry_hint(&e),
            reason: format!("WeCom API: {e}"),
        }
    } else {
        Disposition::park(format!("WeCom API: {e}"))
    }
}

impl<B: Broker> RouteStage<B> {
    /// Routes one event; the `Err` side is the disposition of a failure.
    async fn route(&self, env: &Received) -> Result<&'static str, Disposition> {
        let event = parse_event(&env.xml)
            .map_err(|e| Disposition::park(format!("event XML cannot be parsed: {e}")))?;
        match event {
            InboundEvent::ApprovalChange(a) => self.approval(env, a).await,
            InboundEvent::ContactChange(c) => {
                let input = RouteInput::Contact {
                    app: &env.app,
                    change_type: &c.change_type,
                };
                let routes = self.ctx.catalog.routes(&input);
                if routes.is_empty() {
                    return Ok("unrouted");
                }
                let mut record = ContactRecord::from_event(&c);
                if let (Some(user_id), false) =
                    (c.user_id.as_deref(), c.change_type == "delete_user")
                    && let Some(creds) = self.credentials(&env.app)
                {
                    let user = self.api.user(&creds, user_id).await.map_err(api_failure)?;
                    record.merge_directory(&user);
                }
                self.fan_out_changed(env, &routes, MapInput::Contact(record))
                    .await
            }
            InboundEvent::ExternalContactChange(x) => {
                let input = RouteInput::ExternalContact {
                    app: &env.app,
                    change_type: &x.change_type,
                };
                let routes = self.ctx.catalog.routes(&input);
                if routes.is_empty() {
                    return Ok("unrouted");
                }
                let mut record = CustomerRecord::from_event(&x);
                if !x.change_type.starts_with("del_")
                    && let Some(creds) = self.credentials(&env.app)
                {
                    let customer = self
                        .api
                        .external_contact(&creds, &x.external_user_id)
                        .await
                        .map_err(api_failure)?;
                    record.merge_customer(&customer);
                }
                self.fan_out_changed(env, &routes, MapInput::Customer(record))
                    .await
            }
            InboundEvent::OpenApprovalChange(_) | InboundEvent::Other(_) => Ok("not_routed_kind"),
        }
    }

    fn credentials(&self, app: &str) -> Option<Credentials> {
        self.ctx.apps.get(app).and_then(|a| a.credentials.clone())
    }

    async fn approval(
        &self,
        env: &Received,
        a: crate::wecom::event::ApprovalChange,
    ) -> Result<&'static str, Disposition> {
        let ctx = &self.ctx;
        let routes_for = |action| {
            ctx.catalog.routes(&RouteInput::Approval {
                app: &env.app,
                template_id: &a.template_id,
                template_name: &a.sp_name,
                action,
            })
        };
        // A template no mapping routes can never be forwarded: acknowledged with no write
        // (a mapping added later is applied to past forms by `reroute`, which needs none).
        if routes_for(Action::Approved).is_empty() && routes_for(Action::Revoked).is_empty() {
            if a.sp_status == 2 {
                tracing::info!(sp_no = %a.sp_no, template_id = %a.template_id, template = %a.sp_name,
                    "no mapping matches this template: not forwarded (add one under mappings/ to route it)");
            }
            return Ok("unrouted");
        }
        let (app, sp_no, status) = (env.app.clone(), a.sp_no.clone(), a.sp_status);
        let store = ctx.store.clone();
        // Read only: the one write is the observation, or (for an action) the mark after
        // the jobs are published, which records the observation too.
        let state = blocking(move || store.form_state(&app, &sp_no))
            .await?
            .unwrap_or_default();
        let Some(action) = decide(&state, a.sp_status) else {
            let (app, sp_no) = (env.app.clone(), a.sp_no.clone());
            let store = ctx.store.clone();
            blocking(move || store.form_observe(&app, &sp_no, status)).await?;
            tracing::debug!(sp_no = %a.sp_no, status = a.sp_status, "approval event recorded; not an action we forward");
            return Ok("recorded");
        };
        let routes = routes_for(action);
        if routes.is_empty() {
            tracing::info!(sp_no = %a.sp_no, template_id = %a.template_id, template = %a.sp_name, action = action.as_str(),
                "no mapping matches this template for this action: not forwarded");
            return Ok("unrouted");
        }
        let credentials = self.credentials(&env.app).ok_or_else(|| {
            Disposition::park(format!(
                "apps.{}.secret is not configured, so the approval detail cannot be fetched; set it, then replay",
                env.app
            ))
        })?;
        let info = self
            .api
            .approval_detail(&credentials, &a.sp_no)
            .await
            .map_err(api_failure)?;
        let instance = normalise(&info, &ctx.tz)
            .map_err(|e| Disposition::park(format!("approval detail cannot be normalised: {e}")))?;
        let caught_up = instance.status == a.sp_status
            || (action == Action::Approved && matches!(instance.status, 6 | 7 | 10));
        if !caught_up {
            return Err(Disposition::retry(format!(
                "detail shows status {} but the callback said {}; the detail lags, retrying",
                instance.status, a.sp_status
            )));
        }
        let input = MapInput::Approval(instance);
        let routes = chosen(routes, &input)?;
        if routes.is_empty() {
            tracing::info!(sp_no = %a.sp_no, template = %a.sp_name, action = action.as_str(),
                "no matching mapping's [match] condition holds for this form: not forwarded");
            return Ok("unrouted");
        }
        let jobs: Vec<DeliveryJob> = routes
            .iter()
            .map(|m| DeliveryJob {
                key: JobKey::derive(&env.app, &a.sp_no, &m.name, action),
                mapping: m.name.clone(),
                connector: m.connector.clone(),
                action,
                event_id: env.id.clone(),
                app: env.app.clone(),
                business_key: a.sp_no.clone(),
                input: input.clone(),
            })
            .collect();
        self.publish_jobs(env, &jobs).await?;
        let (app, sp_no) = (env.app.clone(), a.sp_no.clone());
        let store = ctx.store.clone();
        let mark = match action {
            Action::Revoked => Forwarded::Revoked,
            _ => Forwarded::Approved,
        };
        let at_ms = crate::broker::now_ms();
        blocking(move || store.form_mark_forwarded(&app, &sp_no, status, mark, at_ms)).await?;
        tracing::info!(sp_no = %a.sp_no, action = action.as_str(), jobs = jobs.len(), "approval forwarded");
        Ok(if action == Action::Revoked {
            "revoked"
        } else {
            "approved"
        })
    }

    async fn fan_out_changed(
        &self,
        env: &Received,
        routes: &[&Mapping],
        input: MapInput,
    ) -> Result<&'static str, Disposition> {
        let routes = chosen(routes.to_vec(), &input)?;
        if routes.is_empty() {
            tracing::info!(event = %env.id, "no matching mapping's [match] condition holds: not forwarded");
            return Ok("unrouted");
        }
        let jobs: Vec<DeliveryJob> = routes
            .iter()
            .map(|m| DeliveryJob {
                // every contact event is its own change: the event id makes the key unique to it
                key: JobKey::derive(&env.app, env.id.as_str(), &m.name, Action::Changed),
                mapping: m.name.clone(),
                connector: m.connector.clone(),
                action: Action::Changed,
                event_id: env.id.clone(),
                app: env.app.clone(),
                business_key: env.business_key.clone(),
                input: input.clone(),
            })
            .collect();
        self.publish_jobs(env, &jobs).await?;
        Ok("changed")
    }

    async fn publish_jobs(&self, env: &Received, jobs: &[DeliveryJob]) -> Result<(), Disposition> {
        for job in jobs {
            let envelope = job
                .to_envelope(env.received_at_ms)
                .map_err(|e| Disposition::park(format!("job cannot be encoded: {e}")))?;
            self.broker
                .publish(&deliver_queue(&job.connector), &envelope)
                .await
                .map_err(|e| Disposition::retry(format!("publishing the job failed: {e}")))?;
        }
        Ok(())
    }
}

/// The mappings whose `[match] condition` holds for this input (all of them when none has a
/// condition). A condition that cannot be evaluated parks the event with the mapping's name and
/// the refusal, so the operator fixes the mapping and replays; no job is published for any
/// mapping until every condition is decided (a form is fanned out whole or not at all).
fn chosen<'a>(routes: Vec<&'a Mapping>, input: &MapInput) -> Result<Vec<&'a Mapping>, Disposition> {
    if routes.iter().all(|m| !m.compiled.has_condition()) {
        return Ok(routes);
    }
    let value = input.to_value();
    let mut kept = Vec::with_capacity(routes.len());
    for m in routes {
        match m.compiled.condition(&value) {
            Ok(true) => kept.push(m),
            Ok(false) => {
                tracing::debug!(mapping = %m.name, "[match] condition is false: mapping skipped");
            }
            Err(r) => {
                return Err(Disposition::park(format!(
                    "mapping `{}`: its [match] condition cannot be decided for this form ({}: {}); fix the mapping, then `wecom-bridge replay`",
                    m.name, r.code, r.message
                )));
            }
        }
    }
    Ok(kept)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Disposition> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Disposition::retry(format!("store: {e}"))),
        Err(e) => Err(Disposition::retry(format!("store task failed: {e}"))),
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
}
