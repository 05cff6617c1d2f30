//! `[writeback]` validation (every error with `file:line:col`) and rendering.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::catalog::{Diagnostic, EventFamily};
use crate::map::{CompiledMapping, MappingSource, compile};

const HEAD: &str = "connector = \"finance\"\n[match]\nevent = \"approval\"\n\
    template_names = [\"费用报销\"]\n[document]\ndocument_no = \"EXP-${$.sp_no}\"\ntotal = \"1.00\"\n";

fn compile_as(text: &str, event: EventFamily) -> Result<CompiledMapping, Vec<Diagnostic>> {
    let d = tempfile::tempdir().expect("temp dir");
    let file = d.path().join("m.toml");
    let zone = jiff::tz::TimeZone::UTC;
    compile(&MappingSource {
        name: "m",
        file: &file,
        text,
        event,
        base_dir: d.path(),
        zone: &zone,
    })
}

fn errors(wb: &str) -> Vec<String> {
    let text = format!("{HEAD}{wb}");
    let diags = compile_as(&text, EventFamily::Approval).expect_err("must not load");
    diags
        .iter()
        .map(|d| {
            assert!(d.line > 0 && d.col > 0, "no position: {d}");
            assert!(d.file.ends_with(Path::new("m.toml")), "{d}");
            format!("{}:{}: {}", d.line, d.col, d.message)
        })
        .collect()
}

fn spec(wb: &str) -> WritebackSpec {
    let text = format!("{HEAD}{wb}");
    let m = compile_as(&text, EventFamily::Approval).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    m.writeback().expect("a writeback spec").clone()
}

const LINE: usize = 8; // first line after HEAD

#[test]
fn a_mapping_without_writeback_has_none() {
    let text = HEAD.to_string();
    assert!(
        compile_as(&text, EventFamily::Approval)
            .unwrap()
            .writeback()
            .is_none()
    );
}

#[test]
fn unknown_keys_and_missing_texts_are_reported_where_they_are() {
    let e = errors("[writeback.delivered]\ntitle = \"入账\"\nlink = \"https://x\"\n");
    assert!(
        e.iter().any(|m| m.starts_with(&format!("{}:", LINE + 2))
            && m.contains("unknown key `link` in [writeback.delivered]")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("`description` is missing")),
        "{e:?}"
    );

    let e = errors("[writeback.applicant]\ntitle = \"x\"\n");
    assert!(
        e.iter().any(|m| m
            .contains("unknown key `applicant` in [writeback]; it takes `delivered` and `dead`")),
        "{e:?}"
    );

    let e = errors("[writeback]\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{LINE}:1: [writeback] is empty"))),
        "{e:?}"
    );
}

#[test]
fn placeholders_are_checked_at_load() {
    let e = errors(
        "[writeback.delivered]\ntitle = \"${voucher}\"\ndescription = \"${reason}\"\nurl = \"https://x/${document.nope}\"\n",
    );
    let at = |line: usize, text: &str| {
        assert!(
            e.iter()
                .any(|m| m.starts_with(&format!("{line}:")) && m.contains(text)),
            "no `{text}` on line {line}: {e:?}"
        );
    };
    at(LINE + 1, "unknown placeholder `${voucher}`");
    at(LINE + 2, "${reason} is only known in [writeback.dead]");
    at(
        LINE + 3,
        "${document.nope} is not a field of [document] (fields: document_no, total)",
    );

    let e = errors("[writeback.delivered]\ntitle = \"${sp_no\"\ndescription = \"x\"\n");
    assert!(e.iter().any(|m| m.contains("`${` is not closed")), "{e:?}");
}

#[test]
fn wecom_limits_are_checked_at_load() {
    let long = "长".repeat(129);
    let e = errors(&format!(
        "[writeback.delivered]\ntitle = \"{long}\"\ndescription = \"x\"\nurl = \"erp/v/1\"\nbtntxt = \"查看详情页\"\n"
    ));
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{}:", LINE + 1)) && m.contains("limit of 128")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{}:", LINE + 3)) && m.contains("https://")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{}:", LINE + 4)) && m.contains("1 to 4 characters")),
        "{e:?}"
    );
}

#[test]
fn operators_need_recipients_and_the_applicant_needs_an_approval() {
    let e = errors("[writeback.dead]\ntitle = \"失败\"\ndescription = \"${reason}\"\n");
    assert!(
        e.iter()
            .any(|m| m.contains("[writeback.dead] needs recipients")),
        "{e:?}"
    );
    let e =
        errors("[writeback.dead]\nto_users = [\"a|b\"]\ntitle = \"失败\"\ndescription = \"x\"\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{}:", LINE + 1)) && m.contains("list of ids")),
        "{e:?}"
    );

    let contact = "connector = \"hr\"\n[match]\nevent = \"contact\"\n[document]\nx = \"1\"\n\
        [writeback.delivered]\ntitle = \"t\"\ndescription = \"d\"\n";
    let d =
        compile_as(contact, EventFamily::Contact).expect_err("contact mappings have no applicant");
    assert!(
        d.iter()
            .any(|d| d.line == 6 && d.message.contains("only approval mappings")),
        "{d:?}"
    );
}

#[test]
fn cards_render_with_captured_values_and_are_cut_to_wecom_limits() {
    let s = spec(
        "[writeback.delivered]\ntitle = \"报销单 ${sp_no} 已入账\"\n\
         description = \"<div class=\\\"highlight\\\">凭证号 ${captured.voucher_no} 金额 ${document.total}</div>\"\n\
         url = \"https://erp.example.com/v/${captured.voucher_id}\"\nbtntxt = \"详情\"\n\
         [writeback.dead]\nto_users = [\"FinanceOps\"]\nto_parties = [2]\ntitle = \"推送失败 ${sp_no}\"\n\
         description = \"${reason}\"\n",
    );
    let refs: Vec<&str> = s.captured_refs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(refs, ["voucher_no", "voucher_id"]);
    let captured = BTreeMap::from([
        ("voucher_no".to_string(), "JZ-000001".to_string()),
        ("voucher_id".to_string(), "1".to_string()),
    ]);
    let doc = json!({"document_no": "EXP-1", "total": "2000.09"});
    let reason = "x".repeat(600);
    let facts = Facts {
        sp_no: "202611300000",
        applicant: "ZhangSan",
        mapping: "m",
        connector: "finance",
        action: "approved",
        reason: &reason,
        captured: &captured,
        document: Some(&doc),
    };
    let users = ["ZhangSan".to_string()];
    let to = Recipients {
        users: &users,
        parties: &[],
        tags: &[],
    };
    let msg = s.delivered.as_ref().unwrap().message(to, &facts);
    assert_eq!(msg["touser"], "ZhangSan");
    assert_eq!(msg["msgtype"], "textcard");
    assert_eq!(msg["enable_duplicate_check"], 1);
    assert_eq!(msg["textcard"]["title"], "报销单 202611300000 已入账");
    assert_eq!(
        msg["textcard"]["description"],
        "<div class=\"highlight\">凭证号 JZ-000001 金额 2000.09</div>"
    );
    assert_eq!(msg["textcard"]["url"], "https://erp.example.com/v/1");
    assert_eq!(msg["textcard"]["btntxt"], "详情");

    let dead = s.dead.as_ref().unwrap();
    assert_eq!(dead.to_users, ["FinanceOps"]);
    assert_eq!(dead.to_parties, ["2"]);
    let to = Recipients {
        users: &dead.to_users,
        parties: &dead.to_parties,
        tags: &dead.to_tags,
    };
    let msg = dead.card.message(to, &facts);
    // no link: a plain text message (a text card needs one), cut to WeCom's limit
    assert_eq!(msg["msgtype"], "text");
    assert_eq!(
        (msg["touser"].as_str(), msg["toparty"].as_str()),
        (Some("FinanceOps"), Some("2"))
    );
    let content = msg["text"]["content"].as_str().unwrap();
    assert!(content.starts_with("推送失败 202611300000\n"), "{content}");
    assert_eq!(
        content.chars().count(),
        "推送失败 202611300000\n".chars().count() + MAX_DESCRIPTION_CHARS
    );
}
