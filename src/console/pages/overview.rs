//! Overview: callbacks journaled and refused (with reasons) in the last hour and day, the
//! outbox backlog, the depth of every stage queue including parked messages, each
//! connector's delivered / retrying / dead jobs with its circuit state and last error, and a
//! chart of deliveries per hour over the last day (inline SVG drawn here: no script, no
//! inline style).
//!
//! Journaled counts come from the journal (a bisection on receive time); refusals are never
//! stored, so their last hour and day come from samples of the refusal counters this module
//! takes once a minute ([`Samples`]), and say so when the samples do not reach back that far.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, OnceLock, PoisonError};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{SignedIn, layout, time};
use crate::admin::AdminState;
use crate::record::JobState;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Totals of the refusal counters by reason, taken at one time.
type Totals = BTreeMap<String, u64>;

/// Samples of the refusal counters, at most one a minute, the last 25 hours of them.
struct Samples(VecDeque<(i64, Totals)>);

static SAMPLES: OnceLock<Mutex<Samples>> = OnceLock::new();

fn refusal_totals() -> Totals {
    let text = crate::telemetry::metrics_handle().render();
    counter_by_label(&text, "wecom_bridge_callbacks_rejected_total", "reason")
}

impl Samples {
    /// Keeps `totals` as of `now` unless the last sample is younger than a minute.
    fn record(&mut self, now: i64, totals: Totals) {
        if self.0.back().is_some_and(|(t, _)| now - t < MINUTE_MS) {
            return;
        }
        self.0.push_back((now, totals));
        while self
            .0
            .front()
            .is_some_and(|(t, _)| now - t > DAY_MS + HOUR_MS)
        {
            self.0.pop_front();
        }
    }

    /// What the counters grew by in the last `window` (per reason), and since when that is
    /// counted: the window's start, or the oldest sample when they do not reach back so far.
    fn growth(&self, now: i64, window: i64, current: &Totals) -> (Totals, Option<i64>) {
        let start = now - window;
        let base = self
            .0
            .iter()
            .rev()
            .find(|(t, _)| *t <= start)
            .map(|(_, b)| (b, None))
            .or_else(|| self.0.front().map(|(t, b)| (b, Some(*t))));
        let Some((base, partial)) = base else {
            return (Totals::new(), Some(now));
        };
        let grown = current
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(base.get(k).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        (grown, partial)
    }
}

/// The samples, started (with a sampler task every minute) on first use.
fn samples() -> &'static Mutex<Samples> {
    SAMPLES.get_or_init(|| {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let now = jiff::Timestamp::now().as_millisecond();
                    if let Some(s) = SAMPLES.get() {
                        s.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(now, refusal_totals());
                    }
                }
            });
        }
        Mutex::new(Samples(VecDeque::new()))
    })
}

/// Sums the samples of counter `name` in Prometheus text, grouped by the value of `label`.
pub(crate) fn counter_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (v, value) in crate::telemetry::samples_by_label(text, name, label) {
        let n = value.parse::<f64>().unwrap_or(0.0);
        // Prometheus counters render as floats; counts of requests are whole numbers.
        *out.entry(v).or_insert(0) += n.max(0.0) as u64;
    }
    out
}

/// `GET /console/overview`.
pub(super) async fn page(State(st): State<AdminState>, SignedIn(session): SignedIn) -> Response {
    let now = jiff::Timestamp::now().as_millisecond();
    let store = st.journal.store().clone();
    let journal = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.journal_counts()?,
            store.journal_count_since(now - HOUR_MS)?,
            store.journal_count_since(now - DAY_MS)?,
        ))
    })
    .await
    .ok()
    .and_then(Result::ok);
    let counts = journal.map(|j| j.0);
    let (broker_state, depths) = match st.broker.get() {
        None => ("connecting".to_string(), Vec::new()),
        Some(b) => match b
            .depths(&crate::broker::listed_queues(
                st.route.catalog.connectors.iter().map(|c| c.name.as_str()),
            ))
            .await
        {
            Ok(d) => ("ok".to_string(), d),
            Err(e) => (format!("unavailable: {e}"), Vec::new()),
        },
    };
    let metrics = crate::telemetry::metrics_handle().render();
    let accepted = counter_by_label(&metrics, "wecom_bridge_callbacks_total", "outcome");
    let refused = counter_by_label(&metrics, "wecom_bridge_callbacks_rejected_total", "reason");
    let (refused_hour, refused_day) = {
        let mut s = samples().lock().unwrap_or_else(PoisonError::into_inner);
        s.record(now, refused.clone());
        (
            s.growth(now, HOUR_MS, &refused),
            s.growth(now, DAY_MS, &refused),
        )
    };
    let health = super::connectors::health(&st).await;
    let chart = chart(&st, now).await;
    let body = html! {
        div.cards {
            div.card id="card-journal" {
                div.value { (counts.map_or("?".to_string(), |c| c.entries.to_string())) }
                div.label { "events journaled" }
            }
            div.card id="card-hour" {
                div.value { (journal.map_or("?".to_string(), |j| j.1.to_string())) }
                div.label { "callbacks journaled, last hour" }
            }
            div.card id="card-day" {
                div.value { (journal.map_or("?".to_string(), |j| j.2.to_string())) }
                div.label { "callbacks journaled, last day" }
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
        h2 { "Deliveries per hour, last 24 hours" }
        (chart)
        h2 { "Connectors" }
        table id="connectors" {
            thead { tr { th { "connector" } th { "circuit" } th.num { "delivered" } th.num { "retrying" } th.num { "dead" } th { "last error" } } }
            tbody {
                @for (name, h) in &health {
                    tr {
                        td { a href={ "/console/deliveries?connector=" (super::journey::urlencode(name)) } { (name) } }
                        td { span class={ "circuit circuit-" (h.circuit) } { (h.circuit) } }
                        td.num { (h.counts.get("delivered").copied().unwrap_or(0) + h.counts.get("duplicate").copied().unwrap_or(0)) }
                        td.num { (h.counts.get("retrying").copied().unwrap_or(0)) }
                        td.num { a href={ "/console/deliveries?state=dead&connector=" (super::journey::urlencode(name)) } { (h.counts.get("dead").copied().unwrap_or(0)) } }
                        td { @if let Some(j) = &h.last_error { (time(j.updated_at_ms)) " " (j.last_error.as_deref().unwrap_or("")) } }
                    }
                }
                @if health.is_empty() { tr { td colspan="6" .muted { "no connector configured" } } }
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
        h2 { "Refused callbacks" }
        table id="refused" {
            thead { tr { th { "reason" } th.num { "last hour" } th.num { "last day" } th.num { "since start" } } }
            tbody {
                @for (reason, n) in &refused {
                    tr {
                        td { (reason) }
                        td.num { (refused_hour.0.get(reason).copied().unwrap_or(0)) }
                        td.num { (refused_day.0.get(reason).copied().unwrap_or(0)) }
                        td.num { (n) }
                    }
                }
                @if refused.is_empty() { tr { td colspan="4" .muted { "no callback refused since the bridge started" } } }
            }
        }
        @if let Some(from) = refused_day.1.filter(|_| !refused.is_empty()) {
            p.muted { "Refusals are counted in memory: the last hour and day reach back to " (time(from)) " (the first sample)." }
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

/// Delivered and failed (retrying or dead) jobs per hour over the last 24 hours, as an SVG
/// bar chart (counted from the ledger's state index, by creation hour).
async fn chart(st: &AdminState, now: i64) -> Markup {
    let since = now - now.rem_euclid(HOUR_MS) - 23 * HOUR_MS;
    let get = |state| st.ledger.histogram(state, since, HOUR_MS, 24);
    let (ok, dup, dead, retrying) = tokio::join!(
        get(JobState::Delivered),
        get(JobState::Duplicate),
        get(JobState::Dead),
        get(JobState::Retrying)
    );
    let (Ok(ok), Ok(dup), Ok(dead), Ok(retrying)) = (ok, dup, dead, retrying) else {
        return html! { p.muted { "The ledger could not be read for the chart." } };
    };
    let good: Vec<u64> = ok.iter().zip(&dup).map(|(a, b)| a + b).collect();
    let bad: Vec<u64> = dead.iter().zip(&retrying).map(|(a, b)| a + b).collect();
    bars(since, &good, &bad)
}

/// The SVG of [`chart`]: one stacked bar per hour (delivered below, failed on top).
fn bars(since: i64, good: &[u64], bad: &[u64]) -> Markup {
    const W: i64 = 720;
    const H: i64 = 140;
    const TOP: i64 = 10;
    let n = good.len().max(1) as i64;
    let slot = W / n;
    let max = good
        .iter()
        .zip(bad)
        .map(|(a, b)| a + b)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |v: u64| -> i64 { (v as i64 * (H - TOP)) / max as i64 };
    let total: u64 = good.iter().chain(bad).sum();
    html! {
        svg.chart id="chart" viewBox={ "0 0 " (W) " " (H + 20) } role="img" aria-label="deliveries per hour, last 24 hours" {
            line.axis x1="0" y1=(H) x2=(W) y2=(H) {}
            text.axis-label x="0" y=(H + 15) { "−24 h" }
            text.axis-label x=(W - 30) y=(H + 15) { "now" }
            text.axis-label x=(W - 4) y="10" text-anchor="end" { "max " (max) " / h" }
            @for (i, (g, b)) in good.iter().zip(bad).enumerate() {
                @let x = i as i64 * slot + 2;
                @let hour = jiff::Timestamp::from_millisecond(since + i as i64 * HOUR_MS).map(|t| t.to_string()).unwrap_or_default();
                @if *g > 0 {
                    rect.bar-ok x=(x) y=(H - scale(*g)) width=(slot - 4) height=(scale(*g)) {
                        title { (hour) ": " (g) " delivered" }
                    }
                }
                @if *b > 0 {
                    rect.bar-bad x=(x) y=(H - scale(*g) - scale(*b)) width=(slot - 4) height=(scale(*b)) {
                        title { (hour) ": " (b) " failed (retrying or dead)" }
                    }
                }
            }
        }
        p.muted.legend {
            span.key-ok { "■" } " delivered  " span.key-bad { "■" } " retrying or dead  · "
            (total) " job(s) created in the last 24 hours"
        }
    }
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

    #[test]
    fn refusals_per_window_come_from_the_samples() {
        let totals = |n: u64| Totals::from([("bad_signature".to_string(), n)]);
        let mut s = Samples(VecDeque::new());
        s.record(0, totals(1));
        s.record(30_000, totals(9)); // within a minute of the last: not kept
        s.record(HOUR_MS, totals(4));
        s.record(2 * HOUR_MS, totals(10));
        let now = 2 * HOUR_MS + 1;
        let (hour, partial) = s.growth(now, HOUR_MS, &totals(12));
        assert_eq!(hour.get("bad_signature"), Some(&8), "12 now, 4 an hour ago");
        assert_eq!(partial, None);
        let (day, partial) = s.growth(now, DAY_MS, &totals(12));
        assert_eq!(
            day.get("bad_signature"),
            Some(&11),
            "since the oldest sample"
        );
        assert_eq!(partial, Some(0), "the samples do not reach back a day");
    }

    #[test]
    fn the_chart_draws_a_bar_per_busy_hour() {
        let svg = bars(0, &[0, 3, 1], &[0, 1, 0]).into_string();
        assert_eq!(svg.matches("class=\"bar-ok\"").count(), 2);
        assert_eq!(svg.matches("class=\"bar-bad\"").count(), 1);
        assert!(!svg.contains("style="), "no inline style under the CSP");
        assert!(svg.contains("5 job(s)"));
    }
}
