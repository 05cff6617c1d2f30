//! The demo's sample expense claims: the approval details the WeCom stand-in serves and the
//! callbacks WeCom would send for them.
//!
//! It owns only sample data; it must not send anything (the demo driver does).

use serde_json::Value;

/// The shipped approval-detail sample the claims are built from (WeCom's raw JSON).
const DETAIL_TEMPLATE: &str = include_str!("../../../samples/approvals/expense-01.json");

/// What the demo expects a claim to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A voucher at the finance system.
    Voucher,
    /// A voucher, then (after the form is revoked) its reversing voucher.
    VoucherThenReversal,
    /// Refused by the mapping, parked with the reason.
    Refused,
}

/// One sample expense claim (费用报销).
#[derive(Debug, Clone)]
pub struct Claim {
    /// 报销事由.
    pub reason: &'static str,
    /// 费用明细: (费用类型, 金额) as exact decimal text.
    pub rows: &'static [(&'static str, &'static str)],
    /// 报销总额.
    pub total: &'static str,
    /// What should happen to it.
    pub expect: Expect,
}

/// The claims the demo sends: two approved, one approved then revoked, one with an expense
/// category the accounts table does not know (the mapping refuses it).
pub const CLAIMS: &[Claim] = &[
    Claim {
        reason: "上海客户拜访差旅报销",
        rows: &[("差旅费", "1999.99"), ("餐费", "0.10")],
        total: "2000.09",
        expect: Expect::Voucher,
    },
    Claim {
        reason: "北京培训期间交通与住宿",
        rows: &[
            ("交通费", "86.50"),
            ("住宿费", "1280.00"),
            ("交通费", "13.50"),
        ],
        total: "1380.00",
        expect: Expect::Voucher,
    },
    Claim {
        reason: "购买签字笔一支",
        rows: &[("办公用品", "0.10")],
        total: "0.10",
        expect: Expect::VoucherThenReversal,
    },
    Claim {
        reason: "中秋节客户礼品",
        rows: &[("礼品费", "520.00")],
        total: "520.00",
        expect: Expect::Refused,
    },
];

/// WeCom's approval status of an approved form.
pub const APPROVED: u32 = 2;
/// WeCom's approval status of a form revoked after approval (已撤销).
pub const REVOKED: u32 = 6;

/// The `info` object `getapprovaldetail` returns for `claim` numbered `sp_no` in `status`,
/// submitted at `apply_time` (Unix seconds).
pub fn detail(claim: &Claim, sp_no: &str, status: u32, apply_time: i64) -> Value {
    let parsed: Value = serde_json::from_str(DETAIL_TEMPLATE)
        .unwrap_or_else(|e| unreachable!("the shipped sample is JSON: {e}"));
    let mut info = parsed["info"].clone();
    info["sp_no"] = sp_no.into();
    info["sp_status"] = status.into();
    info["apply_time"] = apply_time.into();
    if let Some(contents) = info["apply_data"]["contents"].as_array_mut() {
        for control in contents {
            match title(control).as_deref() {
                Some("报销事由") => control["value"]["text"] = claim.reason.into(),
                Some("报销总额") => control["value"]["new_money"] = claim.total.into(),
                Some("费用明细") => {
                    let first_row = control["value"]["children"][0].clone();
                    let rows: Vec<Value> = claim
                        .rows
                        .iter()
                        .map(|(category, amount)| row(&first_row, category, amount))
                        .collect();
                    control["value"]["children"] = Value::Array(rows);
                }
                _ => {}
            }
        }
    }
    info
}

fn title(control: &Value) -> Option<String> {
    control["title"][0]["text"].as_str().map(str::to_string)
}

/// A row of 费用明细 like `template`, with this category and amount.
fn row(template: &Value, category: &str, amount: &str) -> Value {
    let mut row = template.clone();
    if let Some(cells) = row["list"].as_array_mut() {
        for cell in cells {
            match title(cell).as_deref() {
                Some("费用类型") => {
                    cell["value"]["selector"]["options"][0]["value"][0]["text"] = category.into()
                }
                Some("金额") => cell["value"]["new_money"] = amount.into(),
                _ => {}
            }
        }
    }
    row
}

/// The decrypted callback WeCom sends when the form's status changes: the shipped sample
/// (`samples/approval-approved.xml`) for `sp_no`, `status` and change event `change`, sent
/// to `corp_id`.
pub fn callback(corp_id: &str, sp_no: &str, status: u32, change: u32) -> String {
    crate::cli::simulate::SAMPLE_APPROVAL
        .replace("wx5823bf96d3bd56c7", corp_id)
        .replace("202506050012", sp_no)
        .replace(
            "<SpStatus>2</SpStatus><TemplateId>",
            &format!("<SpStatus>{status}</SpStatus><TemplateId>"),
        )
        .replace(
            "<StatuChangeEvent>2</StatuChangeEvent>",
            &format!("<StatuChangeEvent>{change}</StatuChangeEvent>"),
        )
}
