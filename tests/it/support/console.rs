//! Test support: the console and the admin API as a user reaches them over HTTP (bearer
//! tokens, the sign-in form, session cookies).

use std::net::SocketAddr;

use serde_json::Value;

use super::{answer, json_lines};

/// `[[admin.users]]` sections, one per `(name, token, role)`.
pub fn admin_users(users: &[(&str, &str, &str)]) -> String {
    users
        .iter()
        .map(|(name, token, role)| {
            format!("[[admin.users]]\nname = \"{name}\"\ntoken = \"{token}\"\nrole = \"{role}\"\n")
        })
        .collect()
}

/// GETs `url` with `token` as the bearer; returns (status, body).
pub async fn get_as(url: &str, token: &str) -> (u16, String) {
    answer(reqwest::Client::new().get(url).bearer_auth(token)).await
}

/// The newest `limit` rows of the audit log of the bridge at `admin`, read as `token`.
pub async fn audit_rows(admin: SocketAddr, token: &str, limit: usize) -> Vec<Value> {
    let url = format!("http://{admin}/admin/audit?limit={limit}");
    json_lines(&get_as(&url, token).await.1)
}

/// The `name=value` of the cookie `name` that `resp` sets.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
}

/// Posts the console's sign-in form at `console` (`http://…/console`) with `token`, sending
/// the `wb_signin` nonce cookie `nonce_cookie` the sign-in page set, as a browser does.
pub async fn post_sign_in(
    client: &reqwest::Client,
    console: &str,
    nonce_cookie: &str,
    token: &str,
) -> reqwest::Response {
    let nonce = nonce_cookie.trim_start_matches("wb_signin=");
    client
        .post(format!("{console}/sign-in"))
        .header("cookie", nonce_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("token", token), ("nonce", nonce)])
                .finish(),
        )
        .send()
        .await
        .unwrap()
}

/// GETs `url` with the session cookie `session`; answers the page.
pub async fn page_as(client: &reqwest::Client, url: &str, session: &str) -> String {
    client
        .get(url)
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
