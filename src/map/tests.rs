//! Unit tests of the mapping engine: the language, the functions, every load diagnostic, and
//! the money property.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn zone() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("the tz database has Asia/Shanghai")
}

/// Compiles `text` as `dir/m.toml`, with `dir` holding `files` (name, content).
fn compile_in(
    dir: &Path,
    text: &str,
    event: EventFamily,
) -> Result<CompiledMapping, Vec<Diagnostic>> {
    let file = dir.join("m.toml");
    std::fs::write(&file, text).expect("temp dir is writable");
    compile(&MappingSource {
        name: "m",
        file: &file,
        text,
        event,
        base_dir: dir,
        zone: &zone(),
    })
}

fn mapping(text: &str) -> CompiledMapping {
    let d = tempfile::tempdir().expect("temp dir");
    compile_in(d.path(), text, EventFamily::Approval).unwrap_or_else(|e| panic!("{}", render(&e)))
}

fn errors(text: &str) -> String {
    let d = tempfile::tempdir().expect("temp dir");
    render(
        &compile_in(d.path(), text, EventFamily::Approval).expect_err("the mapping must not load"),
    )
}

fn render(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

const HEAD: &str =
    "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_names = [\"费用报销\"]\n";

/// A normalised expense claim: rows of (category, amount), the claimed total, submit time.
fn claim(rows: &[(&str, &str)], total: &str, apply_time: &str) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|(c, a)| {
            json!({
                "费用类型": {"type": "selector", "multi": false, "options": [{"key": "k", "text": c}]},
                "金额": {"type": "money", "amount": a},
            })
        })
        .collect();
    json!({
        "sp_no": "202506040001", "sp_name": "费用报销", "template_id": "T", "status": 2,
        "status_name": "approved", "apply_time": apply_time, "apply_timestamp": 0,
        "applicant": {"user_id": "ZhangSan", "department": "5", "batch": false},
        "approval_nodes": [], "comments": [], "notifyers": [], "form": {"controls": []},
        "form_by_id": {},
        "form_by_title": {
            "报销事由": {"type": "text", "text": "差旅"},
            "报销总额": {"type": "money", "amount": total},
            "费用明细": {"type": "table", "rows": [], "rows_by_id": [], "rows_by_title": rows},
        },
    })
}

fn shipped(name: &str) -> CompiledMapping {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("mappings").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&file).expect("shipped mapping exists");
    compile(&MappingSource {
        name,
        file: &file,
        text: &text,
        event: EventFamily::Approval,
        base_dir: &root.join("mappings"),
        zone: &zone(),
    })
    .unwrap_or_else(|e| panic!("{}", render(&e)))
}

// ---------------------------------------------------------------------------------------------
// The language

#[test]
fn leaves_paths_templates_constants_and_expressions() {
    let m = mapping(&format!(
        "key = \"x:${{$.sp_no}}\"\n{HEAD}[let]\nsp = \"$.sp_no\"\n[document]\na = \"$.sp_no\"\nb = \"EXP-${{sp}}\"\nc = \"CNY\"\nd = \"=size(sp)\"\ne = 7\nf = {{ const = \"=not an expression\" }}\ng = \"$.form_by_title['没有'].text\"\n"
    ));
    let input = claim(&[], "0", "2025-06-04T07:12:00+08:00");
    let doc = run(&m, &input).expect("maps");
    assert_eq!(
        doc,
        json!({"a": "202506040001", "b": "EXP-202506040001", "c": "CNY", "d": 12, "e": 7, "f": "=not an expression", "g": null})
    );
    assert_eq!(m.business_key(&input).expect("key"), "x:202506040001");
}

#[test]
fn for_each_splices_generated_items_and_filters_with_when() {
    let m = mapping(&format!(
        "{HEAD}[let]\nrows = {{ for_each = \"$.form_by_title['费用明细'].rows_by_title[*]\", item = {{ c = \"@['费用类型'].options[0].text\", a = \"@['金额'].amount\" }} }}\n[document]\nlines = [{{ for_each = \"=rows\", as = \"r\", when = \"r.a != '0.00'\", item = {{ amount = \"=r.a\" }} }}, {{ total = \"=sum_by(rows, 'a')\" }}]\n"
    ));
    let doc = run(
        &m,
        &claim(
            &[("交通费", "1.50"), ("餐费", "0.00"), ("餐费", "2.25")],
            "3.75",
            "2025-06-04T07:12:00+08:00",
        ),
    )
    .expect("maps");
    assert_eq!(
        doc,
        json!({"lines": [{"amount": "1.50"}, {"amount": "2.25"}, {"total": "3.75"}]})
    );
}

#[test]
fn lets_run_in_dependency_order_and_a_cycle_is_an_error() {
    let m = mapping(&format!(
        "{HEAD}[let]\nb = \"=dec_add(a, '1')\"\na = \"=dec('1.5')\"\n[document]\nb = \"=b\"\n"
    ));
    assert_eq!(
        run(&m, &claim(&[], "0", "2025-06-04")).expect("maps"),
        json!({"b": "2.5"})
    );
    let e = errors(&format!("{HEAD}[let]\na = \"=b\"\nb = \"=a\"\n"));
    assert!(e.contains("depend on each other in a cycle"), "{e}");
}

#[test]
fn a_mapping_without_document_forwards_the_input() {
    let m = mapping(HEAD);
    let input = claim(&[], "1", "2025-06-04");
    assert_eq!(run(&m, &input).expect("maps"), input);
    assert_eq!(m.business_key(&input).expect("key"), "m:202506040001");
}

#[test]
fn the_match_condition_is_evaluated_on_the_input() {
    let m = mapping(&format!(
        "{HEAD}condition = \"dec_cmp(total, '5000') >= 0\"\n[let]\ntotal = \"$.form_by_title['报销总额'].amount\"\n"
    ));
    assert!(
        m.condition(&claim(&[], "5000.00", "2025-06-04"))
            .expect("evaluates")
    );
    assert!(
        !m.condition(&claim(&[], "4999.99", "2025-06-04"))
            .expect("evaluates")
    );
    assert!(
        mapping(HEAD)
            .condition(&claim(&[], "1", "2025-06-04"))
            .expect("no condition")
    );
}

#[test]
fn deep_and_huge_inputs_are_refused_not_walked_forever() {
    // the bounds guard the conversion of the whole input into CEL values: a mapping whose
    // expressions read `input` converts it
    let m = mapping(&format!(
        "{HEAD}[let]\nn = \"=size(input)\"\n[document]\nn = \"=n\"\n"
    ));
    let mut deep = json!("leaf");
    for _ in 0..(MAX_INPUT_DEPTH + 1) {
        deep = json!([deep]);
    }
    assert_eq!(run(&m, &deep).expect_err("too deep").code, "input_too_deep");
    let huge = Value::Array(vec![Value::Null; MAX_INPUT_NODES + 1]);
    assert_eq!(
        run(&m, &huge).expect_err("too large").code,
        "input_too_large"
    );
    // a mapping that only reads paths reads the same inputs in place, without converting them
    let paths = mapping(&format!(
        "{HEAD}[document]\nsp = \"$.sp_no\"\nx = \"$..leaf\"\n"
    ));
    for input in [&deep, &huge] {
        let doc = run(&paths, input).expect("paths read deep and large inputs in place");
        assert_eq!(doc, json!({"sp": null, "x": []}), "{doc}");
    }
}

// ---------------------------------------------------------------------------------------------
// Functions

fn eval(expr: &str) -> Result<Value, Refusal> {
    let m = mapping(&format!(
        "{HEAD}[document]\nv = \"={}\"\n",
        expr.replace('"', "\\\"")
    ));
    run(&m, &claim(&[], "0", "2025-06-04T07:12:00+08:00")).map(|d| d["v"].clone())
}

/// Checks that each expression evaluates to its value, naming the expression when not.
fn evaluates_to(cases: &[(&str, Value)]) {
    for (expr, want) in cases {
        assert_eq!(&eval(expr).expect(expr), want, "{expr}");
    }
}

#[test]
fn money_is_exact_and_rounds_only_when_told() {
    evaluates_to(&[
        ("dec_add('0.1', '0.2')", json!("0.3")),
        ("money(dec_add('0.10', '0.20'))", json!("0.30")),
        ("dec_mul('2.5', '1333.33', 2, 'half_up')", json!("3333.33")),
        ("dec_round('2.345', 2, 'half_even')", json!("2.34")),
        ("dec_round('2.345', 2, 'half_up')", json!("2.35")),
        ("dec_div('100', '3', 2, 'half_even')", json!("33.33")),
        ("dec_eq('1234.5', '1234.50')", json!(true)),
        ("to_cents('12.34')", json!(1234)),
        ("thousands('-1234567.80')", json!("-1,234,567.80")),
        ("fixed('7', 3)", json!("7.000")),
    ]);
    for (expr, code) in [
        ("money('100.005')", "amount_precision"),
        ("money(1.5)", "inexact_amount"),
        ("dec('12,50')", "bad_amount"),
        ("dec_div('1', '0', 2, 'half_up')", "division_by_zero"),
        ("dec_round('1', 2, 'nearest')", "bad_argument"),
        ("1.5", "bad_value"),
    ] {
        assert_eq!(eval(expr).expect_err(expr).code, code, "{expr}");
    }
}

#[test]
fn dates_belong_to_the_corp_zone() {
    // 07:12 in Shanghai on 4 June is 23:12 UTC on 3 June.
    evaluates_to(&[
        ("date('2025-06-03T23:12:00Z')", json!("2025-06-04")),
        ("date('2025-06-03T23:12:00Z', 'UTC')", json!("2025-06-03")),
        ("period('2025-06-30T16:00:30Z')", json!("2025-07")),
        ("period('2025-06-30T15:59:30Z')", json!("2025-06")),
        ("from_unix(1749021127)", json!("2025-06-04T15:12:07+08:00")),
        ("month_end('2024-02-10')", json!("2024-02-29")),
        (
            "month_start('2025-02-10T10:00:00+08:00')",
            json!("2025-02-01"),
        ),
        (
            "format_time('2025-06-04T07:12:00+08:00', '%Y年%m月%d日')",
            json!("2025年06月04日"),
        ),
        (
            "parse_time('2025/06/04 07:12', '%Y/%m/%d %H:%M')",
            json!("2025-06-04T07:12:00+08:00"),
        ),
        (
            "to_zone('2025-06-04T07:12:00+08:00', 'UTC')",
            json!("2025-06-03T23:12:00+00:00"),
        ),
        ("days_between('2025-06-01', '2025-06-04')", json!(3)),
    ]);
    assert_eq!(
        eval("date('yesterday')").expect_err("not a time").code,
        "bad_time"
    );
}

#[test]
fn strings_count_characters_not_bytes() {
    evaluates_to(&[
        ("substr('上海-北京差旅', 3, 2)", json!("北京")),
        ("pad_left('42', 6, '0')", json!("000042")),
        ("pad_right('报销', 4, '＊')", json!("报销＊＊")),
        ("size('报销')", json!(2)),
        ("upper(trim('  abc '))", json!("ABC")),
        ("replace('138 0000 0001', ' ', '')", json!("13800000001")),
        ("concat('a', 1, true, null)", json!("a1true")),
        ("join(['重点客户', '华东'], ';')", json!("重点客户;华东")),
    ]);
}

#[test]
fn conditions_defaults_and_refusals() {
    evaluates_to(&[
        ("coalesce(null, '', 'x')", json!("x")),
        ("default('', 'none')", json!("none")),
        ("get({'a': 1}, 'b', 2)", json!(2)),
    ]);
    let r = eval("required(null, '报销总额')").expect_err("required");
    assert_eq!(r.code, "missing_field");
    assert!(
        r.message.contains("报销总额") && r.message.contains("m.toml:6:"),
        "{}",
        r.message
    );
    assert_eq!(r.field.as_deref(), Some("document.v"));
    assert_eq!(
        eval("refuse('over_limit', 'too much')")
            .expect_err("refuse")
            .code,
        "over_limit"
    );
}

#[test]
fn group_sum_is_independent_of_row_order() {
    let a = eval("group_sum([{'k': 'b', 'v': '1.10'}, {'k': 'a', 'v': '2'}, {'k': 'b', 'v': '0.05'}], 'k', 'v')").expect("groups");
    let b = eval("group_sum([{'k': 'b', 'v': '0.05'}, {'k': 'b', 'v': '1.10'}, {'k': 'a', 'v': '2'}], 'k', 'v')").expect("groups");
    assert_eq!(a, b);
    assert_eq!(
        a,
        json!([{"key": "a", "amount": "2.00", "count": 1}, {"key": "b", "amount": "1.15", "count": 2}])
    );
    assert_eq!(
        eval("sort_by([{'n': '10'}, {'n': '9'}], 'n')").expect("sorts"),
        json!([{"n": "9"}, {"n": "10"}])
    );
    assert_eq!(
        eval("pluck([{'n': 1}, {'n': 2}], 'n')").expect("plucks"),
        json!([1, 2])
    );
}

// ---------------------------------------------------------------------------------------------
// Broken mappings: every diagnostic names the file, line, column and field

#[test]
fn a_typo_in_a_path_is_caught_at_load() {
    let e = errors(&format!(
        "{HEAD}[document]\ntotal = \"$.form_by_title['报销总额'].amout\"\n"
    ));
    assert!(e.contains("m.toml:6:33: path `$.form_by_title['报销总额'].amout` cannot match the input: no field `amout` here; did you mean `amount`?"), "{e}");
    let e = errors(&format!("{HEAD}[document]\nno = \"$.sp_nom\"\n"));
    assert!(
        e.contains("m.toml:6:8: ") && e.contains("did you mean `sp_no`?"),
        "{e}"
    );
    let e = errors(&format!("{HEAD}[document]\nno = \"$.form_by_title[\"\n"));
    assert!(e.contains("m.toml:6:") && e.contains("path syntax"), "{e}");
}

#[test]
fn an_unknown_function_is_caught_at_load() {
    let e = errors(&format!("{HEAD}[document]\nx = \"=dec_ad('1', '2')\"\n"));
    assert!(
        e.contains("m.toml:6:7: unknown function `dec_ad`; did you mean `dec_add`?"),
        "{e}"
    );
}

#[test]
fn a_wrong_arity_is_caught_at_load() {
    let e = errors(&format!("{HEAD}[document]\nx = \"=dec_mul('1', '2')\"\n"));
    assert!(
        e.contains(
            "m.toml:6:7: `dec_mul` takes 4 argument(s), 2 given; usage: dec_mul(a, b, places, mode)"
        ),
        "{e}"
    );
}

#[test]
fn syntax_errors_unknown_names_and_floats_are_caught_at_load() {
    let e = errors(&format!(
        "{HEAD}[let]\na = \"=dec_add('1',\"\nb = \"=nope\"\n[document]\nx = 1.5\n"
    ));
    assert!(
        e.contains("m.toml:6:") && e.contains("expression syntax"),
        "{e}"
    );
    assert!(e.contains("m.toml:7:7: unknown name `nope`"), "{e}");
    assert!(e.contains("m.toml:9:5: floats are not allowed"), "{e}");
    let e = errors(&format!("documnet = {{}}\n{HEAD}"));
    assert!(e.contains("m.toml:1:12: unknown key `documnet`"), "{e}");
}

#[test]
fn a_missing_table_file_and_an_unknown_table_are_caught_at_load() {
    let e = errors(&format!(
        "{HEAD}[tables.accounts]\nfile = \"tables/nowhere.csv\"\n[document]\nx = \"=lookup('acounts', 'a')\"\n"
    ));
    assert!(
        e.contains("m.toml:5:1: table `accounts`: cannot read") && e.contains("nowhere.csv"),
        "{e}"
    );
    assert!(
        e.contains("m.toml:8:14: unknown table `acounts`")
            && e.contains("did you mean `accounts`?"),
        "{e}"
    );
}

/// A temporary directory holding the one lookup table `tables/{file}`.
fn with_table(file: &str, contents: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(d.path().join("tables")).expect("mkdir");
    std::fs::write(d.path().join("tables").join(file), contents).expect("write");
    d
}

#[test]
fn duplicate_table_keys_are_caught_at_load() {
    let d = with_table(
        "a.csv",
        "category,account\n交通费,6602.01\n餐费,6602.03\n交通费,6602.99\n",
    );
    let text = format!("{HEAD}[tables.a]\nfile = \"tables/a.csv\"\n");
    let e = render(&compile_in(d.path(), &text, EventFamily::Approval).expect_err("duplicate"));
    assert!(
        e.contains("a.csv:4:1: duplicate key `交通费` (first on line 2)"),
        "{e}"
    );
}

#[test]
fn a_missing_code_table_entry_refuses_with_the_declared_code() {
    let d = with_table("a.toml", "\"交通费\" = { account = \"6602.01\" }\n");
    let text = format!(
        "{HEAD}[tables.a]\nfile = \"tables/a.toml\"\ncode = \"unknown_category\"\n[document]\nx = \"=lookup('a', '娱乐费')\"\ny = \"=lookup('a', '交通费')\"\n"
    );
    let m = compile_in(d.path(), &text, EventFamily::Approval)
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    let r = run(&m, &claim(&[], "0", "2025-06-04")).expect_err("miss");
    assert_eq!(r.code, "unknown_category");
    assert!(
        r.message.contains("`娱乐费` is not in table `a`") && r.message.contains("m.toml:9:7"),
        "{}",
        r.message
    );
    assert_eq!(r.field.as_deref(), Some("document.x"));
}

#[test]
fn an_unbalanced_voucher_is_refused_whole() {
    // A broken voucher: the credit line takes the first row instead of the total.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/expense-voucher.toml"),
    )
    .expect("shipped");
    let broken = text.replacen("credit = \"=total\"", "credit = \"=rows[0].amount\"", 1);
    assert_ne!(
        broken, text,
        "the voucher's credit line is where this test expects it"
    );
    let d = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(d.path().join("tables")).expect("mkdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/tables/expense-accounts.csv"),
        d.path().join("tables/expense-accounts.csv"),
    )
    .expect("copy");
    let m = compile_in(d.path(), &broken, EventFamily::Approval)
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    let r = run(
        &m,
        &claim(
            &[("交通费", "10.00"), ("餐费", "5.00")],
            "15.00",
            "2025-06-04T07:00:00+08:00",
        ),
    )
    .expect_err("unbalanced");
    assert_eq!(r.code, "unbalanced");
    assert!(
        r.message
            .contains("debits 15.00 do not equal credits 10.00")
            && r.message.contains("m.toml:"),
        "{}",
        r.message
    );
    assert_eq!(r.field.as_deref(), Some("assert[1]"));
}

// ---------------------------------------------------------------------------------------------
// The shipped voucher

#[test]
fn the_voucher_has_one_debit_per_category_and_a_balancing_credit() {
    let m = shipped("expense-voucher");
    let doc = run(
        &m,
        &claim(
            &[("餐费", "0.10"), ("交通费", "1280.50"), ("餐费", "1999.99")],
            "3280.59",
            "2025-06-03T23:30:00Z",
        ),
    )
    .expect("maps");
    assert_eq!(doc["date"], "2025-06-04");
    assert_eq!(
        doc["lines"],
        json!([
            {"account": "6602.01", "description": "管理费用-交通费", "debit": "1280.50", "credit": "0.00"},
            {"account": "6602.03", "description": "管理费用-业务招待费", "debit": "2000.09", "credit": "0.00"},
            {"account": "2241.01", "description": "应付职工报销款 ZhangSan", "debit": "0.00", "credit": "3280.59"},
        ])
    );
    let r = run(&m, &claim(&[("交通费", "1.00")], "1.01", "2025-06-04")).expect_err("mismatch");
    assert_eq!(r.code, "total_mismatch");
    assert!(
        r.message.contains("sum to 1.00 but 报销总额 says 1.01"),
        "{}",
        r.message
    );
}

fn amount() -> impl Strategy<Value = String> {
    (1u64..=100_000_000u64).prop_map(|c| format!("{}.{:02}", c / 100, c % 100))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Money never drifts: debits sum exactly to the credit and to the claimed total, and
    /// every amount has exactly two decimals, for any rows in any order.
    #[test]
    fn money_never_drifts(rows in proptest::collection::vec((0usize..7, amount()), 1..=20)) {
        const CATS: [&str; 7] = ["交通费", "住宿费", "餐费", "差旅费", "办公用品", "通讯费", "培训费"];
        let total: rust_decimal::Decimal = rows.iter().map(|(_, a)| a.parse::<rust_decimal::Decimal>().expect("generated decimal")).sum();
        let total = format!("{total:.2}");
        let rows: Vec<(&str, &str)> = rows.iter().map(|(c, a)| (CATS[*c], a.as_str())).collect();
        let doc = run(shipped_voucher(), &claim(&rows, &total, "2025-06-04T07:00:00+08:00")).expect("maps");
        let lines = doc["lines"].as_array().expect("lines");
        let mut debits = rust_decimal::Decimal::ZERO;
        for l in lines {
            for side in ["debit", "credit"] {
                let s = l[side].as_str().expect("amounts are strings");
                let (_, frac) = s.split_once('.').expect("two decimals");
                prop_assert_eq!(frac.len(), 2, "{}", s);
            }
            debits += l["debit"].as_str().expect("string").parse::<rust_decimal::Decimal>().expect("decimal");
        }
        let credit = lines.last().expect("credit line")["credit"].as_str().expect("string").to_owned();
        prop_assert_eq!(&format!("{debits:.2}"), &credit);
        prop_assert_eq!(credit, total);
    }
}

fn shipped_voucher() -> &'static CompiledMapping {
    static M: std::sync::OnceLock<CompiledMapping> = std::sync::OnceLock::new();
    M.get_or_init(|| shipped("expense-voucher"))
}

#[test]
fn the_input_schema_file_is_generated_from_the_shape() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/mapping-input.schema.json");
    let generated =
        serde_json::to_string_pretty(&shape::approval_schema()).expect("serialises") + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("writes the schema");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/mapping-input.schema.json is stale: run UPDATE_SCHEMA=1 cargo test --lib map::tests::the_input_schema"
    );
}

#[test]
fn the_normalised_fixtures_fit_the_input_shape() {
    for f in ["approval_detail_expense.json", "approval_detail_leave.json"] {
        let raw: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/wecom")
                    .join(f),
            )
            .expect("fixture"),
        )
        .expect("json");
        let doc = cases::prepare_input(&raw, &zone()).expect("normalises");
        let mut bad = Vec::new();
        shape::violations(&doc, &shape::approval(), "$", &mut bad);
        assert!(
            bad.is_empty(),
            "{f}: fields the shape does not know: {bad:?}"
        );
    }
}

#[test]
fn plain_paths_read_exactly_what_the_general_query_reads() {
    use serde_json_path::JsonPath;
    use spec::{PathLeaf, Step, plain_steps};
    let input = json!({
        "sp_no": "202506050012",
        "n": 0,
        "form_by_title": {
            "金额": {"type": "money", "amount": "12.50"},
            "a.b": {"text": "dot in a key"},
            "费用明细": {"rows_by_title": [
                {"费用类型": {"options": [{"text": "差旅费"}, {"text": "x"}]}},
                {"费用类型": {"options": []}}
            ]}
        },
        "list": [1, [2, 3], {"k": null}]
    });
    let paths = [
        "$.sp_no",
        "$.missing",
        "$.n.deeper",
        "$.form_by_title['金额'].amount",
        "$.form_by_title[\"金额\"].amount",
        "$.form_by_title['a.b'].text",
        "$.form_by_title.金额.amount",
        "$.form_by_title['费用明细'].rows_by_title[0]['费用类型'].options[0].text",
        "$.form_by_title['费用明细'].rows_by_title[1]['费用类型'].options[0].text",
        "$.form_by_title['费用明细'].rows_by_title[7]",
        "$.list[1][1]",
        "$.list[2].k",
        "$.list[0].k",
        "$.sp_no[0]",
        "$.list.k",
        "$",
    ];
    for text in paths {
        let steps = plain_steps(text);
        assert!(steps.is_some(), "{text} is a plain path");
        let leaf = PathLeaf::new(JsonPath::parse(text).expect("valid"), text, false, true);
        let general = leaf.path.query(&input).into_iter().next();
        assert_eq!(leaf.first(&input), general, "{text}");
    }
    assert_eq!(
        plain_steps("$.a['b'][2]"),
        Some(vec![
            Step::Name("a".into()),
            Step::Name("b".into()),
            Step::Index(2)
        ])
    );
    // anything else goes through the general query
    for text in [
        "$.list[-1]",
        "$.list[ 0 ]",
        "$['a\\'b']",
        "$.list[*]",
        "$..k",
        "$.list[0:1]",
        "$[?@.k]",
        "$.list[01]",
    ] {
        assert_eq!(plain_steps(text), None, "{text}");
    }
}
