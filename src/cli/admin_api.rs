//! The running bridge's admin API, as the CLI commands call it: one place that finds it,
//! sends the admin token and turns a refusal into an error that shows the answer.
//!
//! It must not decide what a command does when no bridge answers: each command opens the
//! store (and broker) itself then.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::config::Config;

/// The admin API at `admin.listen`, with the configured token.
#[derive(Debug)]
pub(super) struct AdminApi {
    base: String,
    token: Option<String>,
}

impl AdminApi {
    /// The admin API of the configured listener (resolving the token; nothing is sent).
    pub(super) fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            base: Self::base_url(config),
            token: config
                .resolve()?
                .admin_token
                .map(|t| t.expose().to_string()),
        })
    }

    /// The admin API if a bridge answers its `/healthz` within 2 s; `None` when no bridge
    /// runs there.
    pub(super) async fn running(config: &Config) -> anyhow::Result<Option<Self>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let up = client
            .get(format!("{}/healthz", Self::base_url(config)))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            Self::new(config).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `http://<admin.listen>`: where a running bridge answers.
    pub(super) fn base_url(config: &Config) -> String {
        format!("http://{}", config.admin.listen)
    }

    /// Sends `method path?query` and answers the body; a status other than 2xx is an error
    /// that quotes the body (the admin API says there what to fix).
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<String> {
        let (status, text) = self
            .send(method, &format!("{}{path}", self.base), query)
            .await?;
        success(status, text)
    }

    /// GETs the path made of `segments`, each percent-encoded (so a job key or an SpNo can be
    /// one); `None` when the admin API answers 404 Not Found, otherwise as [`AdminApi::call`].
    pub(super) async fn get_found(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Option<String>> {
        let mut url = reqwest::Url::parse(&format!("{}/", self.base))
            .with_context(|| format!("admin.listen `{}` is not an address", self.base))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("admin.listen `{}` gives no usable URL", self.base))?
            .pop_if_empty()
            .extend(segments);
        let (status, text) = self.send(Method::GET, url.as_str(), query).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        success(status, text).map(Some)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<(StatusCode, String)> {
        let mut req = reqwest::Client::new().request(method, url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("the running bridge's admin API at {url} did not answer"))?;
        let status = resp.status();
        Ok((status, resp.text().await?))
    }

    /// [`AdminApi::call`] for an endpoint that answers one JSON value.
    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let text = self.call(method, path, query).await?;
        serde_json::from_str(&text).context("unexpected admin answer")
    }

    /// [`AdminApi::call`] for an endpoint that answers one JSON value per line.
    pub(super) async fn json_lines<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<Vec<T>> {
        let text = self.call(Method::GET, path, query).await?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).context("unexpected admin answer"))
            .collect()
    }
}

/// The body of a 2xx answer; any other status is an error that quotes the body.
fn success(status: StatusCode, text: String) -> anyhow::Result<String> {
    if !status.is_success() {
        bail!("admin API answered {status}: {}", text.trim());
    }
    Ok(text)
}

/// The query of an admin API call: the parameters that have a value, in the order given.
pub(super) fn query<'a>(
    params: impl IntoIterator<Item = (&'a str, Option<String>)>,
) -> Vec<(&'a str, String)> {
    params
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}
