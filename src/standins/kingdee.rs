//! Kingdee K3Cloud WebAPI stand-in (PROTOCOLS.md §1.8).
//!
//! Verifies the SDK signed headers (recomputing `X-Api-Signature` and `X-Kd-Signature`
//! from its own copy of the AppID/AppSecret) or a session cookie from `LoginBySign` /
//! `LoginByAppSecret` / `ValidateUser`; accepts the new and the legacy envelope; answers
//! business outcomes as HTTP 200 with typed `Result.ResponseStatus`; enforces `FBillNo`
//! uniqueness with the real message; models the A → B → C status chain (double Audit gives
//! `单据已经审核！`); answers gateway errors as HTTP 519.
//!
//! Unconfirmed and chosen here: a wrong signature or session is answered with the
//! documented `会话信息已丢失，请重新登录` MsgCode 1 (§1.3/§1.8); the 519 time window is
//! 600 s; the texts for "bill not found" and "Audit before Submit".

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::vendor_server::{Answer, Recorded, Server};
use crate::deliver::vendor::kingdee::{
    self, Credentials, DEFAULT_SECRET_SEED, SERVICE_PREFIX, SESSION_COOKIE, SESSION_LOST,
};

/// State of the Kingdee stand-in; configure through [`Server::with`].
#[derive(Debug)]
pub struct KingdeeState {
    /// The one integration identity the server knows.
    pub creds: Credentials,
    /// The user's password for `ValidateUser`.
    pub password: String,
    /// Accepted clock skew for `x-api-timestamp`, seconds.
    pub tolerance_secs: i64,
    /// The server clock (unix seconds); tests may set it.
    pub now: Option<i64>,
    /// Missing-field rules: (form id, field, message) → a per-field error when the Model
    /// lacks the field.
    pub required: Vec<(String, String, String)>,
    /// Answers left to refuse with MsgCode 14 调用限制.
    pub throttle_next: u32,
    sessions: HashSet<String>,
    next_session: u64,
    bills: HashMap<(String, String), Bill>,
    next_id: i64,
}

#[derive(Debug, Clone)]
struct Bill {
    id: i64,
    status: char,
    model: Value,
}

/// A running Kingdee stand-in.
pub type KingdeeStandIn = Server<KingdeeState>;

impl KingdeeState {
    /// A server knowing one identity.
    #[must_use]
    pub fn new(creds: Credentials, password: &str) -> KingdeeState {
        KingdeeState {
            creds,
            password: password.to_owned(),
            tolerance_secs: 600,
            now: None,
            required: Vec::new(),
            throttle_next: 0,
            sessions: HashSet::new(),
            next_session: 1,
            bills: HashMap::new(),
            next_id: 100_029,
        }
    }

    /// Drops every session (the next call with an old cookie gets `会话信息已丢失`).
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    /// The saved Model of a bill, with its status letter.
    #[must_use]
    pub fn bill(&self, form_id: &str, number: &str) -> Option<(char, Value)> {
        self.bills
            .get(&(form_id.to_owned(), number.to_owned()))
            .map(|b| (b.status, b.model.clone()))
    }

    fn clock(&self) -> i64 {
        self.now
            .unwrap_or_else(|| jiff::Timestamp::now().as_second())
    }
}

/// Starts a Kingdee stand-in.
pub async fn start(state: KingdeeState) -> KingdeeStandIn {
    Server::start(state, handle).await
}

fn status_answer(rs: Value, extra: Value) -> Answer {
    let mut result = json!({"ResponseStatus": rs});
    if let (Some(r), Value::Object(extra)) = (result.as_object_mut(), extra) {
        r.extend(extra);
    }
    Answer::json(200, &json!({"Result": result}))
}

fn failure(errors: Vec<Value>, msg_code: i64) -> Answer {
    status_answer(
        json!({"ErrorCode": 500, "IsSuccess": false, "Errors": errors, "SuccessEntitys": [], "SuccessMessages": [], "MsgCode": msg_code}),
        json!({}),
    )
}

fn session_lost() -> Answer {
    failure(
        vec![json!({"FieldName": null, "Message": SESSION_LOST, "DIndex": 0})],
        1,
    )
}

fn gateway(code: i64, description: &str) -> Answer {
    Answer::json(
        519,
        &json!({"errcode": code, "description": description, "description_cn": description}),
    )
    .with_header("X-Api-Requestid", "standin-1")
}

fn handle(s: &mut KingdeeState, req: &Recorded) -> Answer {
    let Some(service) = req
        .path
        .rsplit('/')
        .next()
        .and_then(|last| last.strip_prefix(SERVICE_PREFIX))
        .and_then(|rest| rest.strip_suffix(".common.kdsvc"))
    else {
        return gateway(5001, "API not found[GW]");
    };
    let body = req.json().unwrap_or(Value::Null);
    match service {
        "AuthService.LoginBySign" | "AuthService.LoginByAppSecret" | "AuthService.ValidateUser" => {
            return login(s, service, &body);
        }
        _ => {}
    }
    if let Some(refusal) = authenticate(s, req) {
        return refusal;
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return failure(
            vec![json!({"FieldName": "", "Message": "调用限制", "DIndex": 0})],
            14,
        );
    }
    let Some((form_id, data)) = envelope(&body) else {
        return failure(
            vec![json!({"FieldName": "", "Message": "参数错误", "DIndex": 0})],
            8,
        );
    };
    match service {
        "DynamicFormService.Save" => save(s, &form_id, &data),
        "DynamicFormService.Submit" => transition(s, &form_id, &data, 'A', 'B', "提交"),
        "DynamicFormService.Audit" => transition(s, &form_id, &data, 'B', 'C', "审核"),
        _ => gateway(5001, "API not found[GW]"),
    }
}

fn authenticate(s: &KingdeeState, req: &Recorded) -> Option<Answer> {
    if let Some(app_key) = req.header("X-Kd-Appkey") {
        let Some(ts) = req
            .header("x-api-timestamp")
            .and_then(|t| t.parse::<i64>().ok())
        else {
            return Some(gateway(4006, "X-Api-TimeStamp is invalid"));
        };
        if req.header("X-Api-ClientID").unwrap_or_default().is_empty() {
            return Some(gateway(4002, "Unauthorized, APP_ID is empty[GW]"));
        }
        if (s.clock() - ts).abs() > s.tolerance_secs {
            return Some(gateway(4006, "X-Api-TimeStamp is invalid"));
        }
        let Ok(expected) = kingdee::signed_headers(&s.creds, &req.path, ts, DEFAULT_SECRET_SEED)
        else {
            return Some(session_lost());
        };
        let ok = app_key == s.creds.app_id
            && expected
                .iter()
                .all(|(name, value)| req.header(name) == Some(value.as_str()));
        return (!ok).then(session_lost);
    }
    let id = req
        .cookie(SESSION_COOKIE)
        .or_else(|| req.header(SESSION_COOKIE).map(str::to_owned));
    match id {
        Some(id) if s.sessions.contains(&id) => None,
        _ => Some(session_lost()),
    }
}

fn login(s: &mut KingdeeState, service: &str, body: &Value) -> Answer {
    let p: Vec<String> = match body.get("parameters").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        None => ["acctID", "username", "password", "lcid"]
            .iter()
            .map(|k| {
                body.get(*k)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_default()
            })
            .collect(),
    };
    let c = &s.creds;
    let arg = |i: usize| p.get(i).map(String::as_str).unwrap_or_default();
    let ok = match service {
        "AuthService.ValidateUser" => {
            arg(0) == c.acct_id && arg(1) == c.user && arg(2) == s.password
        }
        "AuthService.LoginByAppSecret" => {
            arg(0) == c.acct_id && arg(1) == c.user && arg(2) == c.app_id && arg(3) == c.app_secret
        }
        _ => {
            let ts = arg(3).parse::<i64>().unwrap_or(i64::MIN);
            arg(0) == c.acct_id
                && arg(1) == c.user
                && arg(2) == c.app_id
                && arg(4) == kingdee::login_sign(c, ts)
        }
    };
    if !ok {
        return Answer::json(
            200,
            &json!({"Message": "用户名或密码错误！", "MessageCode": "", "LoginResultType": 0, "Context": null, "KDSVCSessionId": null, "IsSuccessByAPI": false}),
        );
    }
    let id = format!("standin-session-{}", s.next_session);
    s.next_session += 1;
    s.sessions.insert(id.clone());
    Answer::json(200, &json!({"Message": null, "MessageCode": "", "LoginResultType": 1, "Context": {"SessionId": id}, "KDSVCSessionId": id, "Lcid": c.lcid, "IsSuccessByAPI": true}))
        .with_header("Set-Cookie", format!("{SESSION_COOKIE}={id}; Path=/"))
        .with_header("Set-Cookie", format!("ASP.NET_SessionId={id}; Path=/; HttpOnly"))
}

/// `(form id, data)` from either envelope; `data` may itself be a JSON string.
fn envelope(body: &Value) -> Option<(String, Value)> {
    let (form, data) = match body.get("parameters").and_then(Value::as_array) {
        Some(p) => (p.first()?.as_str()?.to_owned(), p.get(1)?.clone()),
        None => (
            body.get("formid")
                .or_else(|| body.get("FormId"))?
                .as_str()?
                .to_owned(),
            body.get("data")?.clone(),
        ),
    };
    let data = match data {
        Value::String(text) => serde_json::from_str(&text).ok()?,
        other => other,
    };
    Some((form, data))
}

fn save(s: &mut KingdeeState, form_id: &str, data: &Value) -> Answer {
    let Some(model) = data.get("Model").filter(|m| m.is_object()) else {
        return failure(
            vec![json!({"FieldName": "", "Message": "Model 不能为空", "DIndex": 0})],
            8,
        );
    };
    let missing: Vec<Value> = s
        .required
        .iter()
        .filter(|(form, field, _)| form == form_id && model.get(field).is_none_or(Value::is_null))
        .map(|(_, field, message)| json!({"FieldName": field, "Message": message, "DIndex": 0}))
        .collect();
    if !missing.is_empty() {
        return failure(missing, 11);
    }
    let id = s.next_id;
    let number = model
        .get("FBillNo")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map_or_else(|| format!("STANDIN{id}"), str::to_owned);
    let key = (form_id.to_owned(), number.clone());
    if s.bills.contains_key(&key) {
        let message = format!("违反字段唯一性要求：编码唯一。[{number}]在当前系统中已经被使用。");
        return failure(
            vec![json!({"FieldName": "FBillNo", "Message": message, "DIndex": 0})],
            11,
        );
    }
    s.next_id += 1;
    s.bills.insert(
        key,
        Bill {
            id,
            status: 'A',
            model: model.clone(),
        },
    );
    status_answer(
        json!({"IsSuccess": true, "Errors": [], "SuccessEntitys": [{"Id": id, "Number": number, "DIndex": 0}], "SuccessMessages": [], "MsgCode": 0}),
        json!({"Id": id, "Number": number, "NeedReturnData": [{}]}),
    )
}

fn transition(
    s: &mut KingdeeState,
    form_id: &str,
    data: &Value,
    from: char,
    to: char,
    verb: &str,
) -> Answer {
    let numbers: Vec<String> = match (data.get("Numbers"), data.get("Ids")) {
        (Some(Value::Array(n)), _) => n
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        (_, Some(Value::String(ids))) => {
            let ids: Vec<&str> = ids.split(',').map(str::trim).collect();
            s.bills
                .iter()
                .filter(|((f, _), b)| f == form_id && ids.contains(&b.id.to_string().as_str()))
                .map(|((_, n), _)| n.clone())
                .collect()
        }
        _ => Vec::new(),
    };
    if numbers.is_empty() {
        return failure(
            vec![json!({"FieldName": "", "Message": "单据标识为空", "DIndex": 0})],
            5,
        );
    }
    let mut errors = Vec::new();
    let mut done = Vec::new();
    for (i, number) in numbers.iter().enumerate() {
        match s.bills.get_mut(&(form_id.to_owned(), number.clone())) {
            None => errors.push(json!({"FieldName": "", "Message": format!("单据编号为“{number}”的单据不存在！"), "DIndex": i})),
            Some(b) if b.status == from => {
                b.status = to;
                done.push(json!({"Id": b.id, "Number": number, "DIndex": i}));
            }
            Some(b) if b.status == 'C' => errors.push(json!({"FieldName": "", "Message": format!("单据编号为“{number}”的单据，单据已经审核！"), "DIndex": i})),
            Some(_) => errors.push(json!({"FieldName": "", "Message": format!("单据编号为“{number}”的单据，当前状态不允许{verb}！"), "DIndex": i})),
        }
    }
    if errors.is_empty() {
        status_answer(
            json!({"IsSuccess": true, "Errors": [], "SuccessEntitys": done, "SuccessMessages": [], "MsgCode": 0}),
            json!({}),
        )
    } else {
        status_answer(
            json!({"ErrorCode": 500, "IsSuccess": false, "Errors": errors, "SuccessEntitys": done, "SuccessMessages": [], "MsgCode": 11}),
            json!({}),
        )
    }
}
