#!/usr/bin/env python3
"""Writes the mapping samples and cases: raw `oa/getapprovaldetail` responses shaped as in
PROTOCOL.md §4 (empty placeholders in every `value`, zh_CN/en titles, text with < > & " ' and
line breaks, amounts such as 0.10, 1999.99 and 100000.00, 1 to 20 rows, claims submitted just
before and after midnight in Shanghai), plus the documents the mappings must produce.

The expected documents are computed here, independently of the Rust engine (Python's Decimal
and zoneinfo), so the cases check the engine rather than repeat it.

    python3 samples/gen_mapping_samples.py      # from the repository root
"""

import json
import random
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
SH = ZoneInfo("Asia/Shanghai")
PLACEHOLDERS = ["tips", "members", "departments", "files", "children", "stat_field", "sum_field",
                "related_approval", "students", "classes", "docs", "wedrive_files"]
ACCOUNTS = {
    "交通费": ("6602.01", "管理费用-交通费"), "住宿费": ("6602.02", "管理费用-住宿费"),
    "餐费": ("6602.03", "管理费用-业务招待费"), "差旅费": ("6602.04", "管理费用-差旅费"),
    "办公用品": ("6602.05", "管理费用-办公费"), "通讯费": ("6602.06", "管理费用-通讯费"),
    "培训费": ("6602.07", "管理费用-培训费"),
}
CATEGORY_KEYS = {name: f"option-17480000000{i:02d}" for i, name in enumerate(ACCOUNTS, 1)}


def title(zh, en=None, en_first=False):
    t = [{"text": zh, "lang": "zh_CN"}]
    if en:
        t = [{"text": en, "lang": "en"}] + t if en_first else t + [{"text": en, "lang": "en"}]
    return t


def value(**kw):
    v = {k: [] for k in PLACEHOLDERS}
    v.update(kw)
    return v


def control(kind, cid, t, **kw):
    return {"control": kind, "id": cid, "title": t, "value": value(**kw), "hidden": 0}


def text(cid, zh, s, en=None):
    return control("Text", cid, title(zh, en), text=s)


def money(cid, zh, amount, en=None):
    return control("Money", cid, title(zh, en), new_money=amount)


def number(cid, zh, n):
    return control("Number", cid, title(zh), new_number=n)


def selector(cid, zh, key, label, en_label=None):
    vals = [{"text": label, "lang": "zh_CN"}] + ([{"text": en_label, "lang": "en"}] if en_label else [])
    return control("Selector", cid, title(zh), selector={"type": "single", "options": [{"key": key, "value": vals}], "exp_type": 0})


def date(cid, zh, ts, kind="day"):
    return control("Date", cid, title(zh), date={"type": kind, "s_timestamp": str(ts)})


def table(cid, zh, rows):
    return control("Table", cid, title(zh), children=[{"list": r} for r in rows])


def response(sp_no, sp_name, template_id, status, apply_time, contents, applicant="ZhangSan", party="5"):
    return {
        "errcode": 0, "errmsg": "ok",
        "info": {
            "sp_no": sp_no, "sp_name": sp_name, "sp_status": status, "template_id": template_id,
            "apply_time": apply_time, "applyer": {"userid": applicant, "partyid": party},
            "batch_applyer": [], "sp_record": [{
                "sp_status": 2, "approverattr": 1,
                "details": [{"approver": {"userid": "LiSi"}, "speech": "同意", "sp_status": 2,
                             "sptime": apply_time + 3600, "media_id": []}],
            }],
            "notifyer": [{"userid": "WangWu"}], "apply_data": {"contents": contents}, "comments": [],
            "process_list": {"node_list": [{
                "node_type": 1, "sp_status": 2, "apv_rel": 2,
                "sub_node_list": [{"userid": "LiSi", "speech": "同意", "sp_yj": 2,
                                   "sptime": apply_time + 3600, "media_ids": []}],
            }]},
        },
    }


def ts(y, mo, d, h, mi, s=0, tz=SH):
    return int(datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp())


def sh_date(t):
    return datetime.fromtimestamp(t, SH).date()


def cents(d):
    return str(Decimal(d).quantize(Decimal("0.01")))


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Expense claims

EXPENSE_TPL = "C4ZXKC8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT"


def expense(sp_no, apply_time, rows, total=None, reason="客户拜访差旅报销", status=2, en_first=False,
            applicant="ZhangSan"):
    """rows: [(category, amount, note)]"""
    if total is None:
        total = cents(sum(Decimal(a) for _, a, _ in rows))
    detail = []
    for i, (cat, amount, note) in enumerate(rows):
        detail.append([
            selector(f"Selector-1748000000100", "费用类型", CATEGORY_KEYS.get(cat, "option-9999"), cat),
            money("Money-1748000000101", "金额", amount, "Amount"),
            text("Text-1748000000102", "说明", note),
            date("Date-1748000000103", "发生日期", apply_time - 86400 * (i % 5 + 1)),
        ])
    contents = [
        control("Text", "Text-1748000000001", title("报销事由", "Reason", en_first), text=reason),
        number("Number-1748000000004", "票据张数", str(len(rows))),
        control("Money", "Money-1748000000005", title("报销总额", "Total", en_first), new_money=total),
        table("Table-1748000000018", "费用明细", detail),
        control("Textarea", "Textarea-1748000000002", title("备注"), text="纸质发票已交财务\n含<高铁>&\"住宿\"费用's"),
    ]
    return response(sp_no, "费用报销", EXPENSE_TPL, status, apply_time, contents, applicant)


def voucher(sp_no, apply_time, rows, total, reason, applicant="ZhangSan", reversal=False):
    groups = {}
    for cat, amount, _ in rows:
        groups[cat] = groups.get(cat, Decimal(0)) + Decimal(amount)
    d = sh_date(apply_time)
    debit_lines = [{"account": ACCOUNTS[c][0], "description": ACCOUNTS[c][1], "debit": cents(a), "credit": "0.00"}
                   for c, a in sorted(groups.items())]
    if not reversal:
        return {
            "voucher_no": f"EXP-{sp_no}", "date": d.isoformat(), "period": d.strftime("%Y-%m"),
            "summary": f"费用报销 {sp_no} {reason.strip()[:20]}", "currency": "CNY",
            "applicant": applicant, "department": "5", "total": cents(total),
            "lines": debit_lines + [{"account": "2241.01", "description": f"应付职工报销款 {applicant}",
                                     "debit": "0.00", "credit": cents(total)}],
        }
    credit_lines = [{"account": l["account"], "description": "冲销 " + l["description"], "debit": "0.00",
                     "credit": l["debit"]} for l in debit_lines]
    return {
        "voucher_no": f"EXP-R-{sp_no}", "reverses": f"EXP-{sp_no}", "date": d.isoformat(),
        "period": d.strftime("%Y-%m"), "summary": f"冲销费用报销 {sp_no}", "currency": "CNY",
        "applicant": applicant, "total": cents(total),
        "lines": [{"account": "2241.01", "description": f"冲销应付职工报销款 {applicant}", "debit": cents(total),
                   "credit": "0.00"}] + credit_lines,
    }


def expense_cases():
    out = ROOT / "mappings" / "expense-voucher.cases"
    rev = ROOT / "mappings" / "expense-voucher-reversal.cases"
    cats = list(ACCOUNTS)
    cases = {
        # submitted 07:12 in Shanghai = 23:12 UTC the day before: the voucher date is Shanghai's
        "basic-morning": ("202506040001", ts(2025, 6, 4, 7, 12),
                          [("交通费", "1280.50", "上海虹桥-北京南 高铁往返"), ("餐费", "0.10", "餐费补差"),
                           ("住宿费", "1999.99", "北京 2 晚"), ("交通费", "0.20", "地铁")], None,
                          "6月上海-北京客户拜访差旅报销"),
        "before-midnight": ("202506300002", ts(2025, 6, 30, 23, 59, 30), [("差旅费", "100000.00", "年度差旅包干")], None,
                            "  六月差旅 <包干> & \"结算\"  "),
        "after-midnight": ("202507010003", ts(2025, 7, 1, 0, 0, 30), [("通讯费", "99.00", "话费"), ("办公用品", "0.01", "回形针")],
                           None, "七月第一单 'quoted'\n第二行"),
        "english-titles-first": ("202506040004", ts(2025, 6, 4, 12, 0), [("培训费", "3000.00", "Rust 培训")], None,
                                 "Training / 培训"),
    }
    rnd = random.Random(20250604)
    for n in (10, 20):
        rows = [(rnd.choice(cats), cents(Decimal(rnd.randint(1, 10_000_000)) / 100), f"第{i + 1}行") for i in range(n)]
        cases[f"rows-{n}"] = (f"2025061{n // 10}00{n}", ts(2025, 6, 15, 9, 30), rows, None, f"{n} 行明细报销")
    for name, (sp, at, rows, total, reason) in cases.items():
        total_s = total or cents(sum(Decimal(a) for _, a, _ in rows))
        write(out / f"{name}.json", expense(sp, at, rows, total_s, reason, en_first=name.startswith("english")))
        write(out / f"{name}.expected.json", voucher(sp, at, rows, Decimal(total_s), reason))
    # refusals
    base_rows = [("交通费", "100.00", "打车"), ("餐费", "50.00", "午餐")]
    refusals = {
        "total-mismatch": (expense("202506040010", ts(2025, 6, 4, 10, 0), base_rows, "1234.50"), "total_mismatch"),
        "unknown-category": (expense("202506040011", ts(2025, 6, 4, 10, 0), base_rows + [("娱乐费", "10.00", "KTV")]),
                             "unknown_category"),
        "three-decimals": (expense("202506040012", ts(2025, 6, 4, 10, 0), [("交通费", "100.005", "打车")], "100.01"),
                           "amount_precision"),
        "missing-total": (expense("202506040013", ts(2025, 6, 4, 10, 0), base_rows, ""), "missing_field"),
    }
    for name, (raw, code) in refusals.items():
        write(out / f"{name}.json", raw)
        (out / f"{name}.refused").write_text(code + "\n", encoding="utf-8")
    # equal as decimals: 1234.5 claimed, rows 1234.50
    eq_rows = [("交通费", "1000.00", "机票"), ("餐费", "234.50", "餐费")]
    write(out / "total-without-trailing-zero.json", expense("202506040014", ts(2025, 6, 4, 10, 0), eq_rows, "1234.5"))
    write(out / "total-without-trailing-zero.expected.json",
          voucher("202506040014", ts(2025, 6, 4, 10, 0), eq_rows, Decimal("1234.50"), "客户拜访差旅报销"))
    # reversal
    rows = cases["basic-morning"][2]
    at = cases["basic-morning"][1]
    write(rev / "revoked.json", expense("202506040001", at, rows, None, "6月上海-北京客户拜访差旅报销", status=6))
    write(rev / "revoked.expected.json",
          voucher("202506040001", at, rows, sum(Decimal(a) for _, a, _ in rows), "", reversal=True))
    write(rev / "total-mismatch.json", expense("202506040010", at, base_rows, "1.00", status=6))
    (rev / "total-mismatch.refused").write_text("total_mismatch\n", encoding="utf-8")
    # a folder of raw responses for `mapping test --samples` and `mapping bench`
    bench = ROOT / "samples" / "approvals"
    for i in range(20):
        rows = [(rnd.choice(cats), cents(Decimal(rnd.randint(1, 5_000_000)) / 100), f"明细 {j + 1}") for j in range(10)]
        write(bench / f"expense-{i + 1:02d}.json",
              expense(f"2025062000{i + 1:02d}", ts(2025, 6, 20, 8 + i % 12, 5 * i % 60), rows, None, f"批量样例 {i + 1}"))


# ----------------------------------------------------------------------------------------------
# Purchase requests

def purchase(sp_no, at, items, claimed, change="否", supplier_code=" SUP-0042 "):
    detail = [[text("Text-1749100000101", "物品名称", n), text("Text-1749100000102", "规格型号", spec),
               number("Number-1749100000103", "数量", q), money("Money-1749100000104", "单价", p)]
              for n, spec, q, p in items]
    contents = [
        text("Text-1749100000001", "采购事由", "研发部门扩容 <第二批> & 备件"),
        text("Text-1749100000002", "供应商", "上海某某电子有限公司"),
        text("Text-1749100000003", "供应商编码", supplier_code),
        selector("Selector-1749100000004", "是否变更供应商", "option-yes" if change == "是" else "option-no", change),
        table("Table-1749100000005", "采购明细", detail),
        money("Money-1749100000006", "采购总额", claimed),
        date("Date-1749100000007", "期望到货日期", ts(2025, 7, 15, 0, 0)),
    ]
    return response(sp_no, "采购申请", "3WLJF6naF5wpfHgbcvSgkSp9Zr2TpL6uRzLbDKxd", 2, at, contents, "ZhaoYan", "20")


def purchase_cases():
    out = ROOT / "mappings" / "purchase-order.cases"
    legal = ROOT / "mappings" / "purchase-legal.cases"
    items = [("显示器", "27\" 4K <IPS>", "3", "1999.99"), ("键盘", "机械 & 静音", "10", "0.10"),
             ("服务器内存", "64GB DDR5", "2.5", "1333.33")]
    at = ts(2025, 6, 10, 23, 30)
    amounts = [(Decimal(q) * Decimal(p)).quantize(Decimal("0.01"), ROUND_HALF_UP) for _, _, q, p in items]
    total = cents(sum(amounts))
    write(out / "three-items.json", purchase("202506100001", at, items, total, "是"))
    write(out / "three-items.expected.json", {
        "po_no": "PO-202506100001", "order_date": sh_date(at).isoformat(), "requester": "ZhaoYan",
        "department": "20", "purpose": "研发部门扩容 <第二批> & 备件", "currency": "CNY",
        "expected_delivery": "2025-07-15", "total": total,
        "supplier": {"code": "SUP-0042", "name": "上海某某电子有限公司"},
        "lines": [{"item": n, "spec": s, "quantity": q, "unit_price": cents(p), "amount": str(a)}
                  for (n, s, q, p), a in zip(items, amounts)],
    })
    write(out / "total-mismatch.json", purchase("202506100002", at, items, cents(Decimal(total) + Decimal("0.01"))))
    (out / "total-mismatch.refused").write_text("total_mismatch\n", encoding="utf-8")
    write(legal / "supplier-change.json", purchase("202506100001", at, items, total, "是"))
    write(legal / "supplier-change.expected.json", {
        "kind": "supplier_change", "approval_no": "202506100001", "requested_by": "ZhaoYan",
        "approved_at": datetime.fromtimestamp(at, SH).isoformat(),
        "supplier": {"code": " SUP-0042 ", "name": "上海某某电子有限公司"}, "reason": "研发部门扩容 <第二批> & 备件",
    })


# ----------------------------------------------------------------------------------------------
# Customer discounts

def discount(sp_no, rate, price="1999.99"):
    contents = [
        text("Text-1749200000001", "客户编码", "  CUST-00731 "),
        text("Text-1749200000002", "客户名称", "北京某某贸易有限公司"),
        selector("Selector-1749200000003", "产品", "SKU-1001", "工业传感器 A 型", "Sensor A"),
        money("Money-1749200000004", "原价", price),
        number("Number-1749200000005", "折扣率(%)", rate),
        date("Date-1749200000006", "生效日期", ts(2025, 7, 1, 0, 0)),
        date("Date-1749200000007", "失效日期", ts(2025, 12, 31, 0, 0)),
    ]
    return response(sp_no, "客户折扣申请", "Disc8ymh1bf2RpS9tqUhwPEvv8Qe5HMbLuBJ3TT", 2, ts(2025, 6, 20, 16, 45), contents,
                    "SunLi", "5")


def discount_cases():
    out = ROOT / "mappings" / "customer-discount.cases"
    for name, rate, price in [("twelve-and-a-half", "12.5", "1999.99"), ("half-even", "50", "0.05")]:
        write(out / f"{name}.json", discount("20250620000" + str(len(name) % 10), rate, price))
        net = (Decimal(price) * (1 - (Decimal(rate) / 100).quantize(Decimal("0.000001"), ROUND_HALF_EVEN))).quantize(
            Decimal("0.01"), ROUND_HALF_EVEN)
        write(out / f"{name}.expected.json", {
            "reference": "DISC-20250620000" + str(len(name) % 10), "customer_code": "CUST-00731",
            "customer_name": "北京某某贸易有限公司", "product_code": "SKU-1001", "product_name": "工业传感器 A 型",
            "list_price": cents(price), "discount_percent": rate, "net_price": str(net),
            "valid_from": "2025-07-01", "valid_to": "2025-12-31", "approved_by": "LiSi",
        })
    write(out / "out-of-range.json", discount("202506200009", "120"))
    (out / "out-of-range.refused").write_text("discount_out_of_range\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Contact and customer records (hand-written: the stage defines these records)

def record_cases():
    emp = ROOT / "mappings" / "employee-hr.cases"
    write(emp / "create-user.json", {
        "change_type": "create_user", "user_id": "ZhangWei", "name": "张伟", "department_ids": [5, 12],
        "main_department": 5, "mobile": "138 0000 0001", "email": " ZhangWei@Example.com ", "position": "销售经理",
    })
    write(emp / "create-user.expected.json", {
        "employee_no": "ZhangWei", "name": "张伟", "mobile": "13800000001", "email": "zhangwei@example.com",
        "position": "销售经理", "cost_center": "CC-SH-0421", "departments": ["5", "12"], "source": "wecom",
    })
    write(emp / "unknown-department.json", {"user_id": "LiNa", "name": "李娜", "department_ids": [99]})
    write(emp / "unknown-department.expected.json", {
        "employee_no": "LiNa", "name": "李娜", "mobile": "", "email": "", "position": "",
        "cost_center": "CC-UNASSIGNED", "departments": ["99"], "source": "wecom",
    })
    write(emp / "no-name.json", {"user_id": "Ghost", "department_ids": [1]})
    (emp / "no-name.refused").write_text("missing_field\n", encoding="utf-8")
    crm = ROOT / "mappings" / "customer-crm.cases"
    created = ts(2025, 6, 4, 0, 30)  # 00:30 in Shanghai: still 3 June in UTC
    write(crm / "new-customer.json", {
        "change_type": "add_external_contact", "external_userid": "wmEAlECwAAHrbWYDOK5u3Af13xlYDDNQ",
        "user_id": "ZhangSan", "name": "李雷", "type": 2, "corp_name": "上海某某科技有限公司", "position": "采购总监",
        "follow_info": {"remark": "展会认识 <VIP>", "tags": ["重点客户", "华东"], "createtime": created,
                        "remark_mobiles": ["13900000000"]},
    })
    write(crm / "new-customer.expected.json", {
        "external_id": "wmEAlECwAAHrbWYDOK5u3Af13xlYDDNQ", "name": "李雷", "company": "上海某某科技有限公司",
        "title": "采购总监", "owner": "ZhangSan", "remark": "展会认识 <VIP>", "phone": "13900000000",
        "tags": "重点客户;华东", "first_contact": sh_date(created).isoformat(), "source": "企业微信",
    })
    write(crm / "wechat-user.json", {"external_userid": "wmPerson01", "user_id": "LiSi", "name": "Tom", "type": 1})
    write(crm / "wechat-user.expected.json", {
        "external_id": "wmPerson01", "name": "Tom", "company": "", "title": "", "owner": "LiSi", "remark": "",
        "phone": "", "tags": "", "first_contact": None, "source": "企业微信",
    })


# ----------------------------------------------------------------------------------------------
# Payment requests (the template written from docs/mappings.md alone)

def payment(sp_no, amount):
    bank = control("BankAccount", "BankAccount-1749300000004", title("收款账户"), bank_account={
        "account_type": 1, "account_name": "上海某某物流有限公司", "account_number": "310066771018000123456",
        "remark": "", "bank": {"bank_alias": "交通银行", "bank_alias_code": "1000009511", "province": "上海市",
                               "province_code": 2, "city": "上海市", "city_code": 21,
                               "bank_branch_name": "交通银行上海分行营业部", "bank_branch_id": "301290000007"}})
    contents = [
        text("Text-1749300000001", "付款事由", "6月物流费 <含税>"),
        money("Money-1749300000002", "付款金额", amount),
        date("Date-1749300000003", "期望付款日期", ts(2025, 6, 30, 0, 0)),
        bank,
    ]
    return response(sp_no, "付款申请", "PayReq6naF5wpfHgbcvSgkSp9Zr2TpL6uRzLbD", 2, ts(2025, 6, 25, 18, 20), contents,
                    "QianCaiWu", "1")


def payment_cases():
    out = ROOT / "mappings" / "payment-order.cases"
    write(out / "supplier-payment.json", payment("202506250001", "58200.5"))
    write(out / "supplier-payment.expected.json", {
        "payment_no": "PAY-202506250001", "amount": "58200.50", "currency": "CNY", "purpose": "6月物流费 <含税>",
        "value_date": "2025-06-30", "requested_by": "QianCaiWu",
        "payee": {"name": "上海某某物流有限公司", "account": "310066771018000123456", "bank": "交通银行",
                  "branch_code": "301290000007", "corporate": True},
    })
    write(out / "zero.json", payment("202506250002", "0.00"))
    (out / "zero.refused").write_text("non_positive_amount\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Leave (from the leave fixture of the WeCom tests, approved)

def leave_cases():
    out = ROOT / "mappings" / "leave-hr.cases"
    raw = json.loads((ROOT / "tests" / "fixtures" / "wecom" / "approval_detail_leave.json").read_text(encoding="utf-8"))
    raw["info"]["sp_status"] = 2
    write(out / "sick-leave-hours.json", raw)
    info = raw["info"]
    vac = next(c for c in info["apply_data"]["contents"] if c["control"] == "Vacation")["value"]["vacation"]
    rng = vac["attendance"]["date_range"]
    slice_info = vac["attendance"]["slice_info"]
    iso = lambda t: datetime.fromtimestamp(t, SH).isoformat()
    write(out / "sick-leave-hours.expected.json", {
        "record_id": f"LV-{info['sp_no']}", "employee_id": "ZhangSan", "leave_type": "SICK", "leave_type_name": "病假",
        "unit": "hours", "amount": cents(Decimal(slice_info["duration"]) / 3600), "start": iso(rng["new_begin"]),
        "end": iso(rng["new_end"]), "start_date": sh_date(rng["new_begin"]).isoformat(),
        "end_date": sh_date(rng["new_end"]).isoformat(), "reason": "急性肠胃炎，附医院证明",
        "days": [{"date": sh_date(d["daytime"]).isoformat(), "hours": cents(Decimal(d["duration"]) / 3600)}
                 for d in slice_info["day_items"]],
    })
    unknown = json.loads(json.dumps(raw))
    for c in unknown["info"]["apply_data"]["contents"]:
        if c["control"] == "Vacation":
            c["value"]["vacation"]["selector"]["options"][0]["key"] = "42"
    write(out / "unknown-type.json", unknown)
    (out / "unknown-type.refused").write_text("unknown_leave_type\n", encoding="utf-8")


if __name__ == "__main__":
    leave_cases()
    expense_cases()
    purchase_cases()
    discount_cases()
    record_cases()
    payment_cases()
