//! Yonyou U8 EAI stand-in (PROTOCOLS.md §2.3).
//!
//! Accepts a `<ufinterface>` POST, checks the root attributes (`roottag`, `billtype`,
//! `proc`, `sender`), keeps bills by business key (`reserve2` for vouchers, else `code`)
//! and answers `<ufinterface roottag="return"><item … succeed="0|101|…" dsc="…"/>` in UTF-8
//! or, on demand, GBK with a GBK declaration.
//!
//! Unconfirmed and chosen here: the duplicate text for a voucher (`凭证已经存在，不可重复！`,
//! modelled on the documented archive message), the `succeed` code and text for a missing
//! account code (`1`, `科目编码不能为空`), and the refusal of an unknown sender.

use std::collections::HashMap;

use quick_xml::events::Event;

use super::vendor_server::{Answer, Recorded, Server};

/// State of the U8 EAI stand-in.
#[derive(Debug, Default)]
pub struct U8State {
    /// Accepted `sender` codes.
    pub senders: Vec<String>,
    /// Answer in GBK (as older EAI installs do).
    pub answer_gbk: bool,
    keys: HashMap<String, u64>,
    next: u64,
}

/// A running U8 EAI stand-in.
pub type U8StandIn = Server<U8State>;

/// Starts a U8 EAI stand-in.
pub async fn start(state: U8State) -> U8StandIn {
    Server::start(state, handle).await
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

fn reply(s: &U8State, item_attrs: &str) -> Answer {
    let (decl, body) = if s.answer_gbk {
        ("GBK", true)
    } else {
        ("UTF-8", false)
    };
    let text = format!(
        r#"<?xml version="1.0" encoding="{decl}"?><ufinterface roottag="return" receiver="u8" sender="standin"><item {item_attrs}/></ufinterface>"#
    );
    if body {
        let bytes = encoding_rs::GBK.encode(&text).0.into_owned();
        Answer::raw(200, "text/xml; charset=GBK", bytes)
    } else {
        Answer::raw(200, "text/xml; charset=utf-8", text)
    }
}

fn handle(s: &mut U8State, req: &Recorded) -> Answer {
    let text = crate::deliver::vendor::u8eai::decode(&req.body);
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut root: HashMap<String, String> = HashMap::new();
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut current = String::new();
    let mut seen_root = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = e.name().as_ref().to_owned();
                if !seen_root {
                    if name != "ufinterface" {
                        break;
                    }
                    seen_root = true;
                    for a in e.attributes().flatten() {
                        if let Ok(v) = a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
                            root.insert(a.key.as_ref().to_owned(), v.into_owned());
                        }
                    }
                }
                current = name;
            }
            Ok(Event::Text(t)) => {
                let v = t.xml_content(quick_xml::XmlVersion::Implicit1_0);
                fields
                    .entry(current.clone())
                    .or_insert_with(|| v.into_owned());
            }
            Ok(Event::Eof) => break,
            Err(e) => {
                return reply(
                    s,
                    &format!(
                        r#"succeed="2" dsc="{}""#,
                        escape(&format!("XML格式错误：{e}"))
                    ),
                );
            }
            Ok(_) => {}
        }
    }
    if !seen_root {
        return reply(s, r#"succeed="2" dsc="根节点必须是ufinterface""#);
    }
    let attr = |k: &str| root.get(k).map(String::as_str).unwrap_or_default();
    if attr("roottag").is_empty() || attr("proc").is_empty() {
        return reply(s, r#"succeed="2" dsc="ufinterface缺少roottag或proc属性""#);
    }
    if !s.senders.iter().any(|x| x == attr("sender")) {
        return reply(
            s,
            &format!(
                r#"succeed="3" dsc="{}""#,
                escape(&format!("发送方{}未注册", attr("sender")))
            ),
        );
    }
    let voucher = attr("roottag") == "voucher";
    if voucher
        && fields
            .get("account_code")
            .is_none_or(|c| c.trim().is_empty())
    {
        return reply(s, r#"succeed="1" dsc="科目编码不能为空""#);
    }
    let key = fields
        .get(if voucher { "reserve2" } else { "code" })
        .cloned()
        .unwrap_or_default();
    if let Some(existing) = s.keys.get(&key).filter(|_| !key.is_empty()) {
        let dsc = if voucher {
            "凭证已经存在，不可重复！"
        } else {
            "编码已经存在，不可重复！"
        };
        return reply(
            s,
            &format!(
                r#"key="{}" succeed="101" dsc="{dsc}" u8key="{existing}""#,
                escape(&key)
            ),
        );
    }
    s.next += 1;
    if !key.is_empty() {
        s.keys.insert(key.clone(), s.next);
    }
    if voucher {
        let period = fields.get("accounting_period").cloned().unwrap_or_default();
        reply(
            s,
            &format!(
                r#"accounting_period="{p}" voucher_type="记" voucher_id="{n}" entry_id="" succeed="0" dsc="凭证已成功保存" u8accounting_period="{p}" u8voucher_id="{n}""#,
                p = escape(&period),
                n = s.next
            ),
        )
    } else {
        reply(
            s,
            &format!(
                r#"key="{}" succeed="0" dsc="ok" u8key="{}""#,
                escape(&key),
                s.next
            ),
        )
    }
}
