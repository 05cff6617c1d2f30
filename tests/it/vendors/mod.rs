//! Vendor client primitives (`deliver::vendor`) against their protocol stand-ins
//! (`standins`) over real HTTP: auth accepted, wrong secret refused in the real shape, a
//! document saved with its id captured, the same business key refused as a duplicate, a
//! business failure permanent with the system's message, and expiry → re-login/refresh.
//! One file per vendor family: the finance systems Kingdee, YonBIP and U8, then the HR and
//! CRM systems Beisen, FxiaoKe and Salesforce.

use serde_json::Value;

mod hr_crm;
mod kingdee;
mod yonbip_u8;

/// POSTs `body` as JSON with `headers`; answers status, the `set-cookie` values and body.
async fn post_json(
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> (u16, Vec<String>, Vec<u8>) {
    let mut req = reqwest::Client::new().post(url).json(body);
    for (n, v) in headers {
        req = req.header(*n, v);
    }
    let resp = req.send().await.expect("stand-in reachable");
    let status = resp.status().as_u16();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    (status, cookies, resp.bytes().await.expect("body").to_vec())
}

/// POSTs `pairs` as an `application/x-www-form-urlencoded` body; answers status and body.
async fn post_form(url: &str, pairs: &[(&'static str, String)]) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .expect("reachable");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

fn form(pairs: &[(&'static str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
