//! Kingdee 金蝶云·星空 (K3Cloud) WebAPI, client side (PROTOCOLS.md §1).
//!
//! Owns: the SDK 8.x signed-header scheme (§1.2), the session logins (§1.3) and their
//! cookie handling, the `Save` / `Submit` / `Audit` envelopes in both the new
//! `{formid, data}` form and the legacy `{"parameters": [formId, "<json string>"]}` form
//! (§1.1), and the classification of answers (§1.5, §1.6, gateway status 519 from §1.2).
//!
//! Must NOT: send requests or keep sessions; the connector does that.
//!
//! Unconfirmed (PROTOCOLS.md §7): the gateway's time-window tolerance and the exact error
//! for a wrong `X-Api-Signature` (we treat the documented `会话信息已丢失，请重新登录`
//! MsgCode 1 answer as "credentials refused"); the meaning of `LoginResultType -5`; whether
//! `GL_VOUCHER` enforces `FBillNo` uniqueness; the `MsgCode` table (third-party comment).

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Outcome, b64, hmac_sha256, id_str, truthy, unknown_answer};

/// Prefix of every WebAPI service name.
pub const SERVICE_PREFIX: &str = "Kingdee.BOS.WebApi.ServicesStub.";
/// The SDK's default seed for decoding the AppID secret part (rot13 of
/// `0054s397p6234378o09pn7q3r5qropr7`); config `x-kdapi-secpwd` may override it.
pub const DEFAULT_SECRET_SEED: &str = "0054f397c6234378b09ca7d3e5debce7";
/// The message a server sends when the session is missing/lost or credentials are wrong.
pub const SESSION_LOST: &str = "会话信息已丢失，请重新登录";
/// Session cookie name set by the login calls.
pub const SESSION_COOKIE: &str = "kdservice-sessionid";
/// Second session cookie set by the login calls.
pub const ASPNET_COOKIE: &str = "ASP.NET_SessionId";

/// Errors in building Kingdee requests or reading a login.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KingdeeError {
    /// The AppID is not `<clientId>_<32 chars>`.
    #[error(
        "Kingdee AppID {0:?} is not <clientId>_<32 characters>; copy it from 第三方系统登录授权"
    )]
    MalformedAppId(String),
    /// The login was refused.
    #[error("Kingdee login refused (LoginResultType {result_type}): {message}")]
    LoginRefused {
        /// `LoginResultType`.
        result_type: i64,
        /// The server's `Message`.
        message: String,
    },
    /// The login answer is not the documented JSON.
    #[error("Kingdee login answer not understood (HTTP {status}): {excerpt}")]
    LoginUnreadable {
        /// HTTP status.
        status: u16,
        /// Raw excerpt.
        excerpt: String,
    },
}

/// Third-party-authorisation credentials (§1.2) and login identity (§1.3).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// 账套ID (data-center id).
    pub acct_id: String,
    /// Integration user name.
    pub user: String,
    /// `AppID`, `<clientId>_<32 chars>`.
    pub app_id: String,
    /// `AppSecret`.
    pub app_secret: String,
    /// Locale, 2052 for Simplified Chinese.
    pub lcid: u32,
    /// Organisation number, "0" by default.
    pub org_num: String,
}

/// The operations we call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `DynamicFormService.Save`.
    Save,
    /// `DynamicFormService.Submit`.
    Submit,
    /// `DynamicFormService.Audit`.
    Audit,
    /// `AuthService.LoginBySign`.
    LoginBySign,
    /// `AuthService.LoginByAppSecret`.
    LoginByAppSecret,
    /// `AuthService.ValidateUser`.
    ValidateUser,
}

impl Op {
    /// The service name after [`SERVICE_PREFIX`].
    #[must_use]
    pub fn service(self) -> &'static str {
        match self {
            Op::Save => "DynamicFormService.Save",
            Op::Submit => "DynamicFormService.Submit",
            Op::Audit => "DynamicFormService.Audit",
            Op::LoginBySign => "AuthService.LoginBySign",
            Op::LoginByAppSecret => "AuthService.LoginByAppSecret",
            Op::ValidateUser => "AuthService.ValidateUser",
        }
    }

    /// The URL path for this operation under the site's base path (e.g. `/k3cloud`).
    #[must_use]
    pub fn path(self, base_path: &str) -> String {
        format!(
            "{}/{SERVICE_PREFIX}{}.common.kdsvc",
            base_path.trim_end_matches('/'),
            self.service()
        )
    }
}

/// `DecodeAppSecret`: the AppID's secret part XOR the seed, base64; empty when the part is
/// not 32 characters or not base64 (as the SDK does).
#[must_use]
pub fn decode_app_secret(part: &str, seed: &str) -> String {
    if part.len() != 32 {
        return String::new();
    }
    let Ok(raw) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, part) else {
        return String::new();
    };
    let mixed: Vec<u8> = raw
        .iter()
        .zip(seed.as_bytes())
        .map(|(a, b)| a ^ b)
        .collect();
    b64(&mixed)
}

/// `HmacHex64`: base64 of the lowercase hex of HMAC-SHA256 (not of the raw bytes).
#[must_use]
pub fn hmac_hex64(msg: &str, key: &str) -> String {
    b64(hex::encode(hmac_sha256(key.as_bytes(), msg.as_bytes())).as_bytes())
}

/// The path as signed: percent-encoded UTF-8 with `/` as `%2F`.
#[must_use]
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `X-Kd-Appdata` plain text: `AcctID,User,LCID,OrgNum`.
#[must_use]
pub fn app_data(creds: &Credentials) -> String {
    format!(
        "{},{},{},{}",
        creds.acct_id, creds.user, creds.lcid, creds.org_num
    )
}

/// `X-Api-Signature` for a POST to `path` at `ts` (unix seconds; the nonce is the same).
#[must_use]
pub fn api_signature(path: &str, ts: i64, client_sec: &str) -> String {
    let msg = format!(
        "POST\n{}\n\nx-api-nonce:{ts}\nx-api-timestamp:{ts}\n",
        encode_path(path)
    );
    hmac_hex64(&msg, client_sec)
}

/// The signed headers for one POST to `path` (§1.2), in the SDK's order.
///
/// # Errors
/// [`KingdeeError::MalformedAppId`] when the AppID has no `_` or its secret part does not
/// decode (a wrong AppID must fail at load, not at the first delivery).
pub fn signed_headers(
    creds: &Credentials,
    path: &str,
    ts: i64,
    seed: &str,
) -> Result<Vec<(&'static str, String)>, KingdeeError> {
    let (client_id, part) = creds
        .app_id
        .split_once('_')
        .ok_or_else(|| KingdeeError::MalformedAppId(creds.app_id.clone()))?;
    let client_sec = decode_app_secret(part, seed);
    if client_id.is_empty() || client_sec.is_empty() {
        return Err(KingdeeError::MalformedAppId(creds.app_id.clone()));
    }
    let data = app_data(creds);
    Ok(vec![
        ("X-Api-ClientID", client_id.to_owned()),
        ("X-Api-Auth-Version", "2.0".to_owned()),
        ("x-api-timestamp", ts.to_string()),
        ("x-api-nonce", ts.to_string()),
        (
            "x-api-signheaders",
            "x-api-timestamp,x-api-nonce".to_owned(),
        ),
        ("X-Api-Signature", api_signature(path, ts, &client_sec)),
        ("X-Kd-Appkey", creds.app_id.clone()),
        ("X-Kd-Appdata", b64(data.as_bytes())),
        (
            "X-Kd-Signature",
            hmac_hex64(&format!("{}{data}", creds.app_id), &creds.app_secret),
        ),
    ])
}

/// `LoginBySign` sign: lowercase hex SHA-256 of the ordinally sorted, concatenated
/// `[acctId, userName, appId, appSecret, timestamp]`.
#[must_use]
pub fn login_sign(creds: &Credentials, ts: i64) -> String {
    let ts = ts.to_string();
    let mut parts = [
        creds.acct_id.as_str(),
        creds.user.as_str(),
        creds.app_id.as_str(),
        creds.app_secret.as_str(),
        ts.as_str(),
    ];
    parts.sort_unstable();
    hex::encode(Sha256::digest(parts.concat().as_bytes()))
}

/// A login request body (legacy `parameters` envelope).
#[must_use]
pub fn login_body(op: Op, creds: &Credentials, password: &str, ts: i64) -> Value {
    let c = creds;
    match op {
        Op::LoginBySign => {
            json!({"parameters": [c.acct_id, c.user, c.app_id, ts.to_string(), login_sign(c, ts), c.lcid]})
        }
        Op::ValidateUser => json!({"parameters": [c.acct_id, c.user, password, c.lcid]}),
        _ => json!({"parameters": [c.acct_id, c.user, c.app_id, c.app_secret, c.lcid]}),
    }
}

/// A logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `KDSVCSessionId` (also the `kdservice-sessionid` cookie).
    pub id: String,
    /// `ASP.NET_SessionId` when the server set it.
    pub aspnet: Option<String>,
}

impl Session {
    /// The `Cookie` header to replay.
    #[must_use]
    pub fn cookie_header(&self) -> String {
        match &self.aspnet {
            Some(asp) => format!("{SESSION_COOKIE}={}; {ASPNET_COOKIE}={asp}", self.id),
            None => format!("{SESSION_COOKIE}={}", self.id),
        }
    }
}

/// Reads a login answer: success ⇔ `LoginResultType == 1` and a non-empty
/// `KDSVCSessionId`; `Set-Cookie` values win over the body for the cookie ids.
///
/// # Errors
/// [`KingdeeError::LoginRefused`] or [`KingdeeError::LoginUnreadable`].
pub fn parse_login<'a>(
    status: u16,
    body: &[u8],
    set_cookies: impl IntoIterator<Item = &'a str>,
) -> Result<Session, KingdeeError> {
    let unreadable = || KingdeeError::LoginUnreadable {
        status,
        excerpt: super::excerpt(body),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let result_type = v
        .get("LoginResultType")
        .and_then(Value::as_i64)
        .ok_or_else(unreadable)?;
    let body_id = v
        .get("KDSVCSessionId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if result_type != 1 || body_id.is_empty() {
        return Err(KingdeeError::LoginRefused {
            result_type,
            message: v
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    let mut session = Session {
        id: body_id,
        aspnet: None,
    };
    for cookie in set_cookies {
        let pair = cookie.split(';').next().unwrap_or_default().trim();
        match pair.split_once('=') {
            Some((SESSION_COOKIE, val)) if !val.is_empty() => session.id = val.to_owned(),
            Some((ASPNET_COOKIE, val)) if !val.is_empty() => session.aspnet = Some(val.to_owned()),
            _ => {}
        }
    }
    Ok(session)
}

/// Which body envelope to send (§1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"formid": …, "data": {…}}` (Python/Go SDKs).
    New,
    /// `{"parameters": [formId, "<data as a JSON string>"]}` (C#/Java clients).
    Legacy,
}

/// The `data` of a Save: the Model plus the options we set.
#[must_use]
pub fn save_data(model: Value, need_return_fields: &[&str]) -> Value {
    json!({
        "NeedUpDateFields": [],
        "NeedReturnFields": need_return_fields,
        "IsDeleteEntry": "true",
        "IsVerifyBaseDataField": "false",
        "IsEntryBatchFill": "true",
        "ValidateFlag": "true",
        "NumberSearch": "true",
        "Model": model,
    })
}

/// The `data` of a Submit/Audit by bill numbers.
#[must_use]
pub fn numbers_data(numbers: &[&str]) -> Value {
    json!({"Numbers": numbers})
}

/// Wraps `data` for `form_id` in the chosen envelope.
#[must_use]
pub fn envelope(form_id: &str, data: &Value, style: Envelope) -> Value {
    match style {
        Envelope::New => json!({"formid": form_id, "data": data}),
        Envelope::Legacy => json!({"parameters": [form_id, data.to_string()]}),
    }
}

/// One per-field error from `Result.ResponseStatus.Errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldName` (may be empty).
    pub field: String,
    /// `Message`.
    pub message: String,
    /// `DIndex`, when given.
    pub index: Option<i64>,
}

/// The `ResponseStatus` object, also inside the `[[{…}]]` wrapping of query errors.
fn response_status(v: &Value) -> Option<&Value> {
    let v = match v {
        Value::Array(outer) => outer.first()?.as_array()?.first()?,
        other => other,
    };
    v.get("Result")?.get("ResponseStatus")
}

/// The per-field errors of an answer (empty when none or not understood).
#[must_use]
pub fn field_errors(body: &[u8]) -> Vec<FieldError> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    response_status(&v)
        .and_then(|s| s.get("Errors"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| FieldError {
                    field: e
                        .get("FieldName")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    message: e
                        .get("Message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    index: e.get("DIndex").and_then(Value::as_i64),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a message is the unique-field violation (`违反字段唯一性要求：…已经被使用。`).
#[must_use]
pub fn is_unique_violation(message: &str) -> bool {
    message.starts_with("违反字段唯一性要求") && message.ends_with("已经被使用。")
}

/// Classifies a WebAPI answer (§1.5–1.7, gateway 519 from §1.2).
///
/// * 519 gateway: `4002` (APP_ID empty), `4006` (timestamp invalid: fix the clock) and
///   `5001` (API not found) are permanent; other gateway codes retryable.
/// * 200: `IsSuccess` (bool or string) → success with `Id`/`Number` (top level or first
///   `SuccessEntitys`); `FBillNo` unique violation and `单据已经审核！` → duplicate;
///   `会话信息已丢失` / `MsgCode 1` → re-login; `MsgCode 13/14` (网控冲突, 调用限制) →
///   retryable; other errors permanent with every field error listed.
#[must_use]
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    if status == 519 {
        return classify_gateway(body);
    }
    if status != 200 && status != 206 {
        return unknown_answer(status, body, "Kingdee WebAPI");
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return unknown_answer(status, body, "Kingdee answer is not JSON");
    };
    let Some(rs) = response_status(&v) else {
        return unknown_answer(status, body, "Kingdee answer has no Result.ResponseStatus");
    };
    let result = v.get("Result");
    if rs.get("IsSuccess").is_some_and(truthy) {
        let first = rs
            .get("SuccessEntitys")
            .and_then(Value::as_array)
            .and_then(|a| a.first());
        let id = id_str(result.and_then(|r| r.get("Id")))
            .or_else(|| id_str(first.and_then(|f| f.get("Id"))));
        let number = id_str(result.and_then(|r| r.get("Number")))
            .or_else(|| id_str(first.and_then(|f| f.get("Number"))));
        return Outcome::success(id, number);
    }
    let errors = field_errors(body);
    let msg_code = rs
        .get("MsgCode")
        .and_then(super::code_str)
        .unwrap_or_default();
    let reason = if errors.is_empty() {
        format!(
            "Kingdee refused (MsgCode {msg_code}): {}",
            super::excerpt(body)
        )
    } else {
        errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.field, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if errors.iter().any(|e| {
        (e.field.eq_ignore_ascii_case("FBillNo") && is_unique_violation(&e.message))
            || e.message.ends_with("单据已经审核！")
    }) {
        return Outcome::Duplicate { reason };
    }
    if msg_code == "1" || errors.iter().any(|e| e.message.contains(SESSION_LOST)) {
        return Outcome::Reauth { reason };
    }
    if msg_code == "13" || msg_code == "14" {
        return Outcome::Retryable {
            reason,
            after: None,
        };
    }
    Outcome::Permanent { reason }
}

fn classify_gateway(body: &[u8]) -> Outcome {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v
        .get("errcode")
        .and_then(super::code_str)
        .unwrap_or_default();
    let reason = format!(
        "Kingdee gateway 519 errcode {code}: {}",
        v.get("description")
            .and_then(Value::as_str)
            .map_or_else(|| super::excerpt(body), str::to_owned)
    );
    match code.as_str() {
        "4002" | "4006" | "5001" => Outcome::Permanent { reason },
        _ => Outcome::Retryable {
            reason,
            after: None,
        },
    }
}

#[cfg(test)]
mod tests;
