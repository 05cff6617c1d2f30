//! YonBIP / YonSuite open API stand-in (PROTOCOLS.md §2.1).
//!
//! Gateway discovery, the signed token GET (recomputes the HMAC), tokens in the query
//! string, `addVoucher` with the real success, failure (`404` 账簿code不能为空), duplicate
//! (`100004` for a repeated `businessId`) and rate-limit (`310046`) shapes, all HTTP 200
//! except an unknown path (HTTP 404 `310404`).
//!
//! Unconfirmed and chosen here: the code for a wrong signature (`10019`, message
//! `签名校验失败`), and that `businessId` is the duplicate key for `addVoucher`.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::vendor_server::{Answer, Recorded, Server};
use crate::deliver::vendor::yonbip::{ADD_VOUCHER_PATH, GATEWAY_PATH, TOKEN_PATH, token_signature};

/// State of the YonBIP stand-in.
#[derive(Debug, Default)]
pub struct YonbipState {
    /// appKey → appSecret.
    pub apps: HashMap<String, String>,
    /// This server's base URL (filled by [`start`]); returned by gateway discovery.
    pub base_url: String,
    /// Answers left to refuse with `310046` (API rate limit).
    pub throttle_next: u32,
    tokens: HashSet<String>,
    next: u64,
    by_business_id: HashMap<String, String>,
}

impl YonbipState {
    /// Invalidates every token (the next call gets `310036 非法token`).
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }
}

/// A running YonBIP stand-in.
pub type YonbipStandIn = Server<YonbipState>;

/// Starts a YonBIP stand-in.
pub async fn start(state: YonbipState) -> YonbipStandIn {
    Server::start_telling_base_url(state, handle, |s, base| s.base_url = base).await
}

fn code(code: &str, message: &str) -> Answer {
    Answer::json(200, &json!({"code": code, "message": message}))
}

fn handle(s: &mut YonbipState, req: &Recorded) -> Answer {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", GATEWAY_PATH) => Answer::json(
            200,
            &json!({"code": "00000", "message": "成功！", "data": {"gatewayUrl": s.base_url, "tokenUrl": s.base_url}}),
        ),
        ("GET", TOKEN_PATH) => token(s, req),
        ("POST", ADD_VOUCHER_PATH) => add_voucher(s, req),
        _ => Answer::json(
            404,
            &json!({"code": "310404", "message": format!("网关上没有注册此API[{}]", req.path)}),
        ),
    }
}

fn token(s: &mut YonbipState, req: &Recorded) -> Answer {
    let app_key = req.query_param("appKey").unwrap_or_default();
    let Some(secret) = s.apps.get(&app_key) else {
        return code("10018", "应用不存在或appKey已停用");
    };
    let ts = req
        .query_param("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(i64::MIN);
    if req.query_param("signature").as_deref()
        != Some(token_signature(&app_key, secret, ts).as_str())
    {
        return code("10019", "签名校验失败");
    }
    s.next += 1;
    let token = format!("yonbip-token-{}", s.next);
    s.tokens.insert(token.clone());
    Answer::json(
        200,
        &json!({"code": "00000", "message": "成功！", "data": {"access_token": token, "expire": 7200}}),
    )
}

fn add_voucher(s: &mut YonbipState, req: &Recorded) -> Answer {
    match req.query_param("access_token") {
        None => return code("310001", "access_token不能为空。"),
        Some(t) if !s.tokens.contains(&t) => return code("310036", "非法token"),
        Some(_) => {}
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return code("310046", "API调用频率超过限制");
    }
    let body = req.json().unwrap_or(Value::Null);
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if text("accbookCode").is_empty() {
        return Answer::json(
            200,
            &json!({"code": "404", "message": "凭证保存不成功,账簿code不能为空！", "data": {}}),
        );
    }
    let business_id = text("businessId");
    if let Some(id) = s
        .by_business_id
        .get(&business_id)
        .filter(|_| !business_id.is_empty())
    {
        return Answer::json(
            200,
            &json!({"code": "100004", "message": "重复提交，该请求已处理", "data": {"id": id}}),
        );
    }
    s.next += 1;
    let voucher_id = format!("2A4556F6-{:08}", s.next);
    if !business_id.is_empty() {
        s.by_business_id.insert(business_id, voucher_id.clone());
    }
    Answer::json(
        200,
        &json!({"code": "200", "message": "OK", "data": {"voucherId": voucher_id, "voucherStatus": "01", "period": text("period"), "billCode": s.next}}),
    )
}
