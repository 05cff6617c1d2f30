//! Mapping cost: an approved expense claim with 10 table rows → its voucher (controls selected
//! by title, code-table lookup, group-by-category sums, balance assertions).
//!
//! `cargo bench --bench mapping`. `object` is normalised instance → document value (the
//! engine alone, on the whole input document); `bytes` is response JSON text → document JSON
//! text (parse, normalise, build the parts of the input the mapping reads, map, serialise), the
//! same work as `wecom-bridge mapping bench` and the deliver stage.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::tz::TimeZone;
use wecom_bridge::catalog::EventFamily;
use wecom_bridge::map::{self, MappingSource, cases};

fn setup() -> (map::CompiledMapping, Vec<u8>, TimeZone) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("mappings/expense-voucher.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let zone = TimeZone::get("Asia/Shanghai").unwrap();
    let m = map::compile(&MappingSource {
        name: "expense-voucher",
        file: &file,
        text: &text,
        event: EventFamily::Approval,
        base_dir: &root.join("mappings"),
        zone: &zone,
    })
    .unwrap();
    // WeCom answers with minified JSON (the sample file is pretty-printed for people: 49 KB
    // against 16 KB as sent)
    let pretty = std::fs::read(root.join("samples/approvals/expense-01.json")).unwrap();
    let bytes =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&pretty).unwrap()).unwrap();
    (m, bytes, zone)
}

fn bench(c: &mut Criterion) {
    let (m, bytes, zone) = setup();
    let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let input = cases::prepare_input(&raw, &zone).unwrap();
    assert_eq!(
        input["form_by_title"]["费用明细"]["rows_by_title"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    map::run(&m, &input).unwrap();

    let mut g = c.benchmark_group("mapping");
    g.throughput(Throughput::Elements(1));
    g.bench_function("object", |b| {
        b.iter(|| map::run(&m, black_box(&input)).unwrap())
    });
    g.bench_function("bytes", |b| {
        b.iter(|| {
            let raw: serde_json::Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            let instance = cases::sample_instance(&raw, &zone).unwrap().unwrap();
            // as the deliver stage builds it: only the parts the mapping reads
            let input = m.approval_input(&instance);
            serde_json::to_vec(&map::run(&m, &input).unwrap()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
