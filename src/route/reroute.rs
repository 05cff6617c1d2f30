//! Re-routing from the journal: approval events that matched no mapping when they arrived
//! are routed again after a mapping is added (`wecom-bridge reroute`, `POST /admin/reroute`).
//!
//! It reads approval events of a time range from the journal, oldest first, and plans each
//! one through the approval lifecycle exactly as the route stage would now: with the form's
//! stored state (what was already forwarded) and the current catalog. An event is published
//! to the route queue again only when it is an action not yet forwarded (approved, or revoked
//! after a forwarded approval) and a mapping now matches it. The route stage checks the
//! lifecycle again when it handles the event, so running reroute twice, or while the first
//! run's events are still queued, never sends a form twice.
//!
//! It must not publish delivery jobs itself (the route stage does, after enrichment) and does
//! not re-route contact events: they have no lifecycle that would tell "already sent".

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{RouteContext, decide};
use crate::broker::{AnyBroker, Broker, ROUTE_QUEUE};
use crate::catalog::{Action, RouteInput};
use crate::journal::Journal;
use crate::journal::relay::envelope_of;
use crate::store::{FormState, JournalFilter};
use crate::wecom::event::{InboundEvent, parse_event};

/// Which journal events to consider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerouteRequest {
    /// Received at or after (Unix ms).
    pub since_ms: i64,
    /// Received before (Unix ms); `None` for now.
    pub until_ms: Option<i64>,
    /// Only forms of this template (its id or its name).
    pub template: Option<String>,
}

/// What a re-route run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerouteReport {
    /// Approval events read from the journal (after the template filter).
    pub scanned: usize,
    /// Published to the route queue again: actions not yet forwarded that now match.
    pub rerouted: usize,
    /// Events whose action was already forwarded, or that are no action (in progress,
    /// rejected…): nothing to do.
    pub already_forwarded_or_no_action: usize,
    /// Actions not yet forwarded that still match no mapping.
    pub still_unrouted: usize,
    /// Problems (each names the event); the other events were still handled.
    pub errors: Vec<String>,
}

/// [`reroute`] on the configured back end.
pub async fn reroute_any(
    ctx: &RouteContext,
    journal: &Journal,
    broker: &AnyBroker,
    request: &RerouteRequest,
) -> RerouteReport {
    match broker {
        AnyBroker::Embedded(b) => reroute(ctx, journal, b, request).await,
        AnyBroker::Rabbitmq(b) => reroute(ctx, journal, b, request).await,
    }
}

/// Plans and publishes the re-route of `request`'s approval events; see the module doc.
pub async fn reroute<B: Broker>(
    ctx: &RouteContext,
    journal: &Journal,
    broker: &B,
    request: &RerouteRequest,
) -> RerouteReport {
    let mut report = RerouteReport::default();
    let filter = JournalFilter {
        kind: Some("approval_change".into()),
        since_ms: Some(request.since_ms),
        until_ms: request.until_ms,
        ..Default::default()
    };
    let store = journal.store().clone();
    let entries = match tokio::task::spawn_blocking(move || store.journal_entries(&filter)).await {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => {
            report.errors.push(format!("reading the journal: {e}"));
            return report;
        }
        Err(e) => {
            report.errors.push(format!("reading the journal: {e}"));
            return report;
        }
    };
    // The form states as they will be once the events published so far are routed.
    let mut planned: HashMap<(String, String), FormState> = HashMap::new();
    // Oldest first: an approval is planned before its revocation.
    for entry in entries.iter().rev() {
        if entry.record.quarantine.is_some() {
            continue;
        }
        let envelope = match envelope_of(journal, entry) {
            Ok(e) => e,
            Err(e) => {
                report.errors.push(format!("entry {}: {e}", entry.seq));
                continue;
            }
        };
        let Ok(InboundEvent::ApprovalChange(a)) = parse_event(&envelope.payload) else {
            continue;
        };
        if request
            .template
            .as_deref()
            .is_some_and(|t| t != a.template_id && t != a.sp_name)
        {
            continue;
        }
        report.scanned += 1;
        let key = (envelope.app.clone(), a.sp_no.clone());
        if !planned.contains_key(&key) {
            let store = journal.store().clone();
            let (app, sp_no) = key.clone();
            match tokio::task::spawn_blocking(move || store.form_state(&app, &sp_no)).await {
                Ok(Ok(state)) => {
                    planned.insert(key.clone(), state.unwrap_or_default());
                }
                Ok(Err(e)) => {
                    report.errors.push(format!("{}: form state: {e}", a.sp_no));
                    continue;
                }
                Err(e) => {
                    report.errors.push(format!("{}: form state: {e}", a.sp_no));
                    continue;
                }
            }
        }
        let state = planned.entry(key).or_default();
        let Some(action) = decide(state, a.sp_status) else {
            report.already_forwarded_or_no_action += 1;
            continue;
        };
        let input = RouteInput::Approval {
            app: &envelope.app,
            template_id: &a.template_id,
            template_name: &a.sp_name,
            action,
        };
        if ctx.catalog.routes(&input).is_empty() {
            report.still_unrouted += 1;
            continue;
        }
        if let Err(e) = broker.publish(ROUTE_QUEUE, &envelope).await {
            report
                .errors
                .push(format!("{} ({}): publishing: {e}", a.sp_no, envelope.id));
            continue;
        }
        let now = crate::broker::now_ms();
        match action {
            Action::Revoked => state.revoked_forwarded_at_ms = Some(now),
            _ => state.approved_forwarded_at_ms = Some(now),
        }
        report.rerouted += 1;
        metrics::counter!("wecom_bridge_rerouted_total", "app" => envelope.app.clone())
            .increment(1);
        tracing::info!(event_id = %envelope.id, sp_no = %a.sp_no, action = action.as_str(), "re-routed an event that matched no mapping");
    }
    tracing::info!(
        scanned = report.scanned,
        rerouted = report.rerouted,
        still_unrouted = report.still_unrouted,
        errors = report.errors.len(),
        "re-route finished"
    );
    report
}
