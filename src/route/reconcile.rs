//! Reconciliation: WeCom says callbacks may be dropped, so the bridge asks WeCom which forms
//! are approved (`oa/getapprovalinfo`, sp_status = 2, ≤ 31-day windows, cursor paging, within
//! the approval APIs' rate limit) and compares with the journal. An approved form the journal
//! has never seen as approved is injected as a synthetic event marked `source = reconcile`,
//! which then takes the normal path (relay → route → lifecycle). Running it twice injects
//! nothing the second time: the injected events are in the journal.

use serde::Serialize;

use super::RouteContext;
use crate::journal::{IncomingEvent, Journal};
use crate::store::AppendOutcome;
use crate::wecom::approval::normalise;

/// What a reconciliation run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReconcileReport {
    /// Apps swept (apps without a secret are skipped).
    pub apps: usize,
    /// Approved forms WeCom listed.
    pub checked: usize,
    /// Of those, forms the journal had never seen as approved.
    pub missing: usize,
    /// Synthetic events journaled for them.
    pub injected: usize,
    /// Problems that stopped part of the sweep (each names the app).
    pub errors: Vec<String>,
}

fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

/// The synthetic callback for an approved form found by reconciliation. Deterministic (no
/// clock), so the same form always gives the same content hash.
pub fn synthetic_event(
    corp_id: &str,
    instance: &crate::wecom::approval::ApprovalInstance,
) -> String {
    format!(
        "<xml><ToUserName>{corp}</ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>{t}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[sys_approval_change]]></Event><ApprovalInfo>\
         <SpNoStr>{sp}</SpNoStr><SpNo>{sp}</SpNo><SpName>{name}</SpName><SpStatus>2</SpStatus>\
         <TemplateId>{tpl}</TemplateId><ApplyTime>{t}</ApplyTime>\
         <Applyer><UserId>{user}</UserId></Applyer><StatuChangeEvent>2</StatuChangeEvent>\
         <BridgeSource>reconcile</BridgeSource></ApprovalInfo></xml>",
        corp = cdata(corp_id),
        t = instance.apply_timestamp,
        sp = cdata(&instance.sp_no),
        name = cdata(&instance.sp_name),
        tpl = cdata(&instance.template_id),
        user = cdata(&instance.applicant.user_id),
    )
}

/// Sweeps every app with credentials for forms approved (submitted) between `since` and
/// `until` (Unix seconds). `progress(done, total)` is called as forms are checked.
pub async fn reconcile(
    ctx: &RouteContext,
    journal: &Journal,
    since: i64,
    until: i64,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    let mut apps: Vec<_> = ctx.apps.iter().collect();
    apps.sort_by(|a, b| a.0.cmp(b.0));
    for (app, access) in apps {
        let Some(creds) = &access.credentials else {
            tracing::debug!(app = %app, "reconciliation skips this app: no apps.<app>.secret");
            continue;
        };
        report.apps += 1;
        let sp_nos = match ctx.api.approved_sp_nos(creds, since, until, None).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(app = %app, error = %e, "reconciliation could not list approved forms");
                report
                    .errors
                    .push(format!("{app}: listing approved forms: {e}"));
                continue;
            }
        };
        let total = sp_nos.len();
        report.checked += total;
        for (i, sp_no) in sp_nos.iter().enumerate() {
            progress(i + 1, total);
            let key = format!("{sp_no}:2");
            let store = journal.store().clone();
            let (a, k) = (app.clone(), key.clone());
            let known = tokio::task::spawn_blocking(move || store.journal_has_key(&a, &k)).await;
            match known {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    report.errors.push(format!("{app}: journal: {e}"));
                    continue;
                }
                Err(e) => {
                    report.errors.push(format!("{app}: journal: {e}"));
                    continue;
                }
            }
            report.missing += 1;
            let instance = match ctx.api.approval_detail(creds, sp_no).await {
                Ok(info) => match normalise(&info, &ctx.tz) {
                    Ok(i) => i,
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{app}: {sp_no}: detail cannot be normalised: {e}"));
                        continue;
                    }
                },
                Err(e) => {
                    report
                        .errors
                        .push(format!("{app}: {sp_no}: fetching detail: {e}"));
                    continue;
                }
            };
            let event = IncomingEvent {
                app: app.clone(),
                kind: "approval_change".into(),
                business_key: key,
                xml: synthetic_event(&creds.corp_id, &instance),
                quarantine: None,
                source: "reconcile".into(),
            };
            match journal.append(event).await {
                Ok(AppendOutcome::Appended(seq)) => {
                    report.injected += 1;
                    metrics::counter!("wecom_bridge_reconcile_injected_total", "app" => app.clone()).increment(1);
                    tracing::warn!(app = %app, sp_no = %sp_no, seq,
                        "reconciliation found an approved form whose callback never arrived; injected it");
                }
                Ok(AppendOutcome::Duplicate(_)) => {}
                Err(e) => report.errors.push(format!("{app}: {sp_no}: journal: {e}")),
            }
        }
    }
    tracing::info!(
        apps = report.apps,
        checked = report.checked,
        missing = report.missing,
        injected = report.injected,
        errors = report.errors.len(),
        "reconciliation finished"
    );
    report
}

/// Runs [`reconcile`] every `interval` over the last `lookback` until `shutdown`.
pub async fn run_periodic(
    ctx: std::sync::Arc<RouteContext>,
    journal: Journal,
    interval: std::time::Duration,
    lookback: std::time::Duration,
    mut shutdown: crate::stage::Shutdown,
) {
    if !ctx.apps.values().any(|a| a.credentials.is_some()) {
        tracing::info!("periodic reconciliation is off: no app has a secret configured");
        return;
    }
    loop {
        if !shutdown.sleep(interval).await {
            return;
        }
        let until = jiff::Timestamp::now().as_second();
        let since = until - lookback.as_secs() as i64;
        reconcile(&ctx, &journal, since, until, &|_, _| {}).await;
    }
}
