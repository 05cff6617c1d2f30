//! Overview: callbacks accepted and refused (with reasons), the outbox backlog, and the
//! depth of every stage queue including parked messages.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{SignedIn, layout};
use crate::admin::AdminState;

/// Sums the samples of counter `name` in Prometheus text, grouped by the value of `label`.
pub(crate) fn counter_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let prefix = format!("{name}{{");
    let key = format!("{label}=\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(v) = labels
            .split_once(&key)
            .and_then(|(_, after)| after.split_once('"'))
            .map(|(v, _)| v.to_string())
        else {
            continue;
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0);
        // Prometheus counters render as floats; counts of requests are whole numbers.
        *out.entry(v).or_insert(0) += n.max(0.0) as u64;
    }
    out
}

/// `GET /console/overview`.
pub(super) async fn page(State(st): State<AdminState>, SignedIn(session): SignedIn) -> Response {
    let store = st.journal.store().clone();
    let counts = tokio::task::spawn_blocking(move || store.journal_counts())
        .await
        .ok()
        .and_then(Result::ok);
    let (broker_state, depths) = match st.broker.get() {
        None => ("connecting".to_string(), Vec::new()),
        Some(b) => match b.depths(&crate::broker::stage_queues()).await {
            Ok(d) => ("ok".to_string(), d),
            Err(e) => (format!("unavailable: {e}"), Vec::new()),
        },
    };
    let metrics = crate::telemetry::metrics_handle().render();
    let accepted = counter_by_label(&metrics, "wecom_bridge_callbacks_total", "outcome");
    let refused = counter_by_label(&metrics, "wecom_bridge_callbacks_rejected_total", "reason");
    let body = html! {
        div.cards {
            div.card id="card-journal" {
                div.value { (counts.map_or("?".to_string(), |c| c.entries.to_string())) }
                div.label { "events journaled" }
            }
            div.card id="card-backlog" {
                div.value { (counts.map_or("?".to_string(), |c| c.unpublished.to_string())) }
                div.label { "outbox backlog (not yet in the broker)" }
            }
            div.card id="card-broker" {
                div.value { (st.broker_kind) }
                div.label { "broker: " (broker_state) }
            }
            div.card id="card-dead" {
                div.value { (depths.iter().map(|d| d.dead).sum::<u64>()) }
                div.label { "dead letters" }
            }
        }
        h2 { "Queues" }
        table id="queues" {
            thead { tr { th { "queue" } th.num { "ready" } th.num { "in flight" } th.num { "delayed" } th.num { "dead" } } }
            tbody {
                @for d in &depths {
                    tr {
                        td { (d.queue) }
                        td.num { (d.ready) } td.num { (d.unacked) } td.num { (d.delayed) }
                        td.num { a href={ "/console/dead-letters?queue=" (d.queue) } { (d.dead) } }
                    }
                }
                @if depths.is_empty() { tr { td colspan="5" .muted { "no broker connection yet" } } }
            }
        }
        h2 { "Callbacks since the bridge started" }
        table id="callbacks" {
            thead { tr { th { "outcome" } th.num { "count" } } }
            tbody {
                @for (outcome, n) in &accepted { tr { td { (outcome) } td.num { (n) } } }
                @for (reason, n) in &refused { tr { td { "refused: " (reason) } td.num { (n) } } }
                @if accepted.is_empty() && refused.is_empty() { tr { td colspan="2" .muted { "no callbacks yet" } } }
            }
        }
    };
    layout("Overview", Some(&session), "overview", body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_label() {
        let text = "# TYPE wecom_bridge_callbacks_total counter\n\
            wecom_bridge_callbacks_total{app=\"a\",outcome=\"accepted\"} 3\n\
            wecom_bridge_callbacks_total{app=\"b\",outcome=\"accepted\"} 2\n\
            wecom_bridge_callbacks_total{app=\"b\",outcome=\"duplicate\"} 1\n\
            wecom_bridge_callbacks_totally{outcome=\"x\"} 9\n";
        let m = counter_by_label(text, "wecom_bridge_callbacks_total", "outcome");
        assert_eq!(m.get("accepted"), Some(&5));
        assert_eq!(m.get("duplicate"), Some(&1));
        assert_eq!(m.len(), 2);
    }
}
