//! The parts of an approval a mapping reads: the same result as on the whole document, and
//! less built.

use std::path::Path;

use jiff::tz::TimeZone;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::super::spec::{PathLeaf, Step, leading_steps};
use super::super::{CompiledMapping, cases, run};
use crate::wecom::approval::{ApprovalInstance, DocumentParts};

fn zone() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("the tz database has Asia/Shanghai")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The raw approval samples: every shipped case and sample that is a `getapprovaldetail`
/// response, plus the test fixtures.
fn approvals() -> Vec<(String, ApprovalInstance)> {
    let mut files = Vec::new();
    for dir in ["mappings", "templates"] {
        for entry in walk(&root().join(dir)) {
            files.push(entry);
        }
    }
    files.extend(cases::inputs(&root().join("samples/approvals")).expect("samples"));
    for f in ["approval_detail_expense.json", "approval_detail_leave.json"] {
        files.push(root().join("tests/fixtures/wecom").join(f));
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        let Ok(raw) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Ok(Some(instance)) = cases::sample_instance(&raw, &zone()) {
            out.push((f.display().to_string(), instance));
        }
    }
    out
}

/// Every `*.json` input below `dir` (cases folders, any depth).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json")
            && !p.to_string_lossy().ends_with(".expected.json")
        {
            out.push(p);
        }
    }
    out
}

fn shipped() -> Vec<crate::catalog::Mapping> {
    crate::catalog::load(&root().join("mappings"), &root().join("connectors"))
        .unwrap_or_else(|e| panic!("{e:?}"))
        .mappings
}

/// `part` holds only what `whole` holds at the same places.
fn is_part_of(part: &Value, whole: &Value, at: &str) {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => {
            for (k, v) in p {
                let w = w
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} is not in the whole"));
                is_part_of(v, w, &format!("{at}.{k}"));
            }
        }
        (Value::Array(p), Value::Array(w)) => {
            assert_eq!(p.len(), w.len(), "{at}: a list keeps all its elements");
            for (i, (p, w)) in p.iter().zip(w).enumerate() {
                is_part_of(p, w, &format!("{at}[{i}]"));
            }
        }
        (p, w) => assert_eq!(p, w, "{at}"),
    }
}

fn outcome(m: &CompiledMapping, input: &Value) -> Result<Value, (String, String)> {
    run(m, input).map_err(|r| (r.code, r.message))
}

#[test]
fn every_shipped_mapping_gives_the_same_on_its_parts_as_on_the_whole_document() {
    let approvals = approvals();
    assert!(approvals.len() >= 25, "only {} approvals", approvals.len());
    let mut documents = 0;
    for m in shipped() {
        for (file, a) in &approvals {
            let whole = a.to_document();
            let part = m.compiled.approval_input(a);
            is_part_of(&part, &whole, "$");
            let got = outcome(&m.compiled, &part);
            assert_eq!(got, outcome(&m.compiled, &whole), "{} on {file}", m.name);
            assert_eq!(
                m.compiled.business_key(&part),
                m.compiled.business_key(&whole),
                "{} on {file}",
                m.name
            );
            documents += usize::from(got.is_ok());
        }
    }
    assert!(documents >= 20, "only {documents} documents were built");
}

#[test]
fn the_expense_voucher_input_has_only_what_it_reads() {
    let m = shipped()
        .into_iter()
        .find(|m| m.name == "expense-voucher")
        .expect("shipped");
    let (_, a) = approvals()
        .into_iter()
        .find(|(f, _)| f.ends_with("samples/approvals/expense-01.json"))
        .expect("sample");
    let part = m.compiled.approval_input(&a);
    let keys: Vec<&str> = part
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["applicant", "apply_time", "form_by_title", "sp_no"]);
    let titles: Vec<&str> = part["form_by_title"]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(titles, ["报销事由", "报销总额", "费用明细"]);
    let table = part["form_by_title"]["费用明细"]
        .as_object()
        .expect("table");
    assert_eq!(table.keys().collect::<Vec<_>>(), ["rows_by_title"]);
    let rows = table["rows_by_title"].as_array().expect("rows");
    assert_eq!(rows.len(), 10);
    for row in rows {
        let cells: Vec<&String> = row.as_object().expect("row").keys().collect();
        assert_eq!(cells, ["费用类型", "金额"]);
    }
}

/// Compiles an approval mapping made of `body` under a `[match]` head.
fn mapping(body: &str) -> CompiledMapping {
    let head =
        "connector = \"finance\"\n[match]\nevent = \"approval\"\ntemplate_names = [\"费用报销\"]\n";
    let d = tempfile::tempdir().expect("temp dir");
    let file = d.path().join("m.toml");
    let text = format!("{head}{body}");
    super::super::compile(&super::super::MappingSource {
        name: "m",
        file: &file,
        text: &text,
        event: crate::catalog::EventFamily::Approval,
        base_dir: d.path(),
        zone: &zone(),
    })
    .unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

#[test]
fn a_mapping_reading_the_input_as_a_value_gets_the_whole_document() {
    let (_, a) = approvals().into_iter().next().expect("an approval");
    for body in [
        "[document]\nn = \"=size(input.form.controls)\"\n",
        "[let]\nc = \"=input.form_by_id\"\n[document]\nc = \"=c\"\n",
        "[document]\nsp = \"$.sp_no\"\nall = \"$\"\n",
        "[document]\nany = \"$..amount\"\n",
    ] {
        assert_eq!(mapping(body).approval_input(&a), a.to_document(), "{body}");
    }
}

#[test]
fn a_for_each_over_every_row_gives_the_same_on_its_parts() {
    let rows = "$.form_by_title['费用明细'].rows_by_title[*]";
    // (let section, for_each source, what goes between the source and the item, item)
    let shapes = [
        // the cells `@` paths name, by title and by id
        (
            "",
            rows,
            "",
            "a = \"@['金额'].amount\", t = \"@['费用类型'].options[0].text\"",
        ),
        (
            "",
            "$.form_by_title['费用明细'].rows_by_id.*",
            "",
            "x = \"@\"",
        ),
        // every control by title, reading its rows
        (
            "",
            "$.form_by_title[*]",
            "",
            "t = \"@.type\", r = \"@.rows_by_title\"",
        ),
        // the element read as a value, or by a `when`
        ("", rows, "as = \"r\",", "x = \"=r\""),
        (
            "",
            rows,
            "as = \"r\", when = \"'金额' in r\",",
            "a = \"@['金额'].amount\"",
        ),
        // a for_each inside, and an absolute path inside the item
        (
            "",
            rows,
            "",
            "o = { for_each = \"@['费用类型'].options[*]\", item = { t = \"@.text\" } }, n = \"$.sp_no\"",
        ),
        // the same rows read two ways
        (
            "[let]\nfirst = \"$.form_by_title['费用明细'].rows_by_title[0]\"\n",
            rows,
            "",
            "a = \"@['金额'].amount\", f = \"=first\"",
        ),
    ];
    let bodies = shapes.map(|(lets, source, extra, item)| {
        format!(
            "{lets}[document]\nl = {{ for_each = \"{source}\", {extra} item = {{ {item} }} }}\n"
        )
    });
    let approvals = approvals();
    for body in &bodies {
        let m = mapping(body);
        let mut rows_seen = 0;
        for (file, a) in &approvals {
            let whole = a.to_document();
            let part = m.approval_input(a);
            is_part_of(&part, &whole, "$");
            let got = outcome(&m, &part);
            assert_eq!(got, outcome(&m, &whole), "{body} on {file}");
            if let Ok(doc) = got {
                rows_seen += doc["l"].as_array().map_or(0, Vec::len);
            }
        }
        assert!(rows_seen >= 20, "{body}: only {rows_seen} items");
    }
}

#[test]
fn any_path_selects_the_same_nodes_in_its_parts_as_in_the_whole_document() {
    let approvals = approvals();
    let paths = [
        "$.sp_no",
        "$.applicant.user_id",
        "$.form.controls[0].value",
        "$.form.controls[*].title",
        "$.form_by_id",
        "$.form_by_title['费用明细'].rows[1][0].value",
        "$.form_by_title['费用明细'].rows_by_id[*]",
        "$.form_by_title['费用明细'].rows_by_title[0]['金额'].amount",
        "$.form_by_title['费用明细'].type",
        "$.form_by_title['报销总额'].amount",
        "$.form_by_title['请假类型']",
        "$.form_by_title.*",
        "$.form_by_title[?@.type == 'money']",
        "$.approval_nodes[*].approvers[*].user_id",
        "$.comments",
        "$['sp_no','sp_name']",
        "$..amount",
        "$.*",
        "$.missing.deeper",
    ];
    for text in paths {
        let path = JsonPath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let leaf = PathLeaf::new(path, text, false, false);
        let mut parts = DocumentParts::none();
        parts.add(leaf.prefix.iter().map(String::as_str));
        for (file, a) in &approvals {
            let whole = a.to_document();
            let part = a.document_parts(&parts);
            assert_eq!(
                leaf.path.query(&part).all(),
                leaf.path.query(&whole).all(),
                "{text} on {file}"
            );
        }
    }
}

#[test]
fn the_leading_steps_of_a_path_stop_at_the_first_step_that_is_not_plain() {
    let names = |v: &[&str]| {
        v.iter()
            .map(|n| Step::Name((*n).into()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        leading_steps("$.form_by_title['费用明细'].rows_by_title[*]"),
        (
            names(&["form_by_title", "费用明细", "rows_by_title"]),
            "[*]"
        )
    );
    assert_eq!(leading_steps("$.a.b"), (names(&["a", "b"]), ""));
    assert_eq!(leading_steps("$..a"), (vec![], "..a"));
    assert_eq!(leading_steps("$['a','b']"), (vec![], "['a','b']"));
    assert_eq!(leading_steps("$.a['b\\'c']"), (names(&["a"]), "['b\\'c']"));
    assert_eq!(
        leading_steps("$.a[2].b"),
        (
            vec![
                Step::Name("a".into()),
                Step::Index(2),
                Step::Name("b".into())
            ],
            ""
        )
    );
    let leaf = |t: &str| PathLeaf::new(JsonPath::parse(t).expect("valid"), t, false, true);
    assert_eq!(leaf("$.a[2].b").prefix, ["a"]);
    assert!(leaf("$").prefix.is_empty());
    let each = |t: &str| PathLeaf::new(JsonPath::parse(t).expect("valid"), t, false, false).each;
    assert!(each("$.a.b[*]") && each("$.a.*"));
    assert!(!each("$.a[0][*]") && !each("$.a[*].b") && !each("$..a[*]"));
}
