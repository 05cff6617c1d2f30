//! `mapping test` and `mapping bench`: try a mapping on samples before anything is sent.
//!
//! Samples may be raw `oa/getapprovaldetail` responses (normalised in the corp's zone first),
//! normalised instances, or contact/customer records. Documents go to stdout, one JSON line
//! per input; summaries go to stderr. Nothing is sent anywhere.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use jiff::tz::TimeZone;
use serde_json::json;

use crate::catalog::{Catalog, Diagnostic, Mapping};
use crate::config::Config;
use crate::map::cases;

/// Arguments of `mapping`.
#[derive(Debug, clap::Args)]
pub struct MappingArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: MappingCommand,
}

/// `mapping` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum MappingCommand {
    /// Run a mapping on a sample (or a folder of samples, or every mapping's cases).
    Test(TestArgs),
    /// Measure a mapping: documents per second and µs per document on one thread, bytes to
    /// bytes (parsing, normalisation, mapping, serialisation).
    Bench(BenchArgs),
}

/// Arguments of `mapping test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The mapping: its name or its file. Not needed with --all.
    pub mapping: Option<String>,
    /// One input file: prints the document, or the refusal.
    #[arg(long, conflicts_with_all = ["samples", "all"])]
    pub sample: Option<PathBuf>,
    /// A folder of inputs: one JSON line per file, a summary on stderr.
    #[arg(long, conflicts_with = "all")]
    pub samples: Option<PathBuf>,
    /// Run the cases beside every mapping (`<name>.cases/`), with a diff on a mismatch.
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `mapping bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The mapping: its name or its file.
    pub mapping: String,
    /// A folder of inputs (raw getapprovaldetail responses or records).
    #[arg(long)]
    pub samples: PathBuf,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
}

fn zone(config: &Config) -> anyhow::Result<TimeZone> {
    TimeZone::get(&config.wecom.time_zone)
        .with_context(|| format!("wecom.time_zone `{}`", config.wecom.time_zone))
}

/// The catalog of `config` in zone `tz`; every problem in it, one a line, is the error.
pub(super) fn catalog(config: &Config, tz: &TimeZone) -> anyhow::Result<Catalog> {
    crate::catalog::load_in_zone(
        &config.catalog.mappings_dir,
        &config.catalog.connectors_dir,
        tz,
    )
    .map_err(|errors| {
        anyhow::anyhow!(
            "mappings/connectors are invalid:\n  {}",
            Diagnostic::join(&errors, "\n  ")
        )
    })
}

fn find<'a>(cat: &'a Catalog, wanted: &str) -> anyhow::Result<&'a Mapping> {
    let as_path = Path::new(wanted);
    cat.mappings
        .iter()
        .find(|m| {
            m.name == wanted
                || m.file == as_path
                || (as_path.is_file() && m.file.canonicalize().ok() == as_path.canonicalize().ok())
        })
        .with_context(|| {
            format!(
                "no mapping `{wanted}`; known: {}",
                cat.mappings
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Runs `mapping …`.
///
/// # Errors
///
/// An invalid catalog, an unknown mapping, unreadable samples, or (for `test`) any failure.
pub fn run(config: &Config, args: MappingArgs) -> anyhow::Result<()> {
    let tz = zone(config)?;
    let cat = catalog(config, &tz)?;
    match args.command {
        MappingCommand::Test(t) => test(&cat, &tz, t),
        MappingCommand::Bench(b) => bench(&cat, &tz, &b),
    }
}

fn test(cat: &Catalog, tz: &TimeZone, t: TestArgs) -> anyhow::Result<()> {
    if t.all {
        return test_all(cat, tz);
    }
    let Some(name) = t.mapping.as_deref() else {
        bail!("name a mapping, or pass --all")
    };
    let m = find(cat, name)?;
    if let Some(file) = t.sample {
        let input = cases::read_input(&file, tz).map_err(|e| anyhow::anyhow!(e))?;
        return match crate::map::run(&m.compiled, &input) {
            Ok(doc) => {
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            }
            Err(r) => bail!(
                "refused: {}: {}{}",
                r.code,
                r.message,
                r.field.map(|f| format!(" [field {f}]")).unwrap_or_default()
            ),
        };
    }
    let Some(dir) = t.samples else {
        bail!("pass --sample <file>, --samples <dir> or --all")
    };
    let files = cases::inputs(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let (mut ok, mut refused) = (0usize, 0usize);
    for file in &files {
        let shown = file.display().to_string();
        let line = match cases::read_input(file, tz).and_then(|v| {
            crate::map::run(&m.compiled, &v).map_err(|r| format!("{}: {}", r.code, r.message))
        }) {
            Ok(doc) => {
                ok += 1;
                json!({ "input": shown, "document": doc })
            }
            Err(e) => {
                refused += 1;
                json!({ "input": shown, "error": e })
            }
        };
        println!("{line}");
    }
    eprintln!(
        "mapping {}: {} input(s), {ok} document(s), {refused} refused or unreadable",
        m.name,
        files.len()
    );
    Ok(())
}

fn test_all(cat: &Catalog, tz: &TimeZone) -> anyhow::Result<()> {
    let (mut pass, mut fail) = (0usize, 0usize);
    for m in &cat.mappings {
        let dir = cases::cases_dir(&m.file);
        if !dir.is_dir() {
            eprintln!(
                "mapping {}: no cases ({} does not exist)",
                m.name,
                dir.display()
            );
            continue;
        }
        for c in cases::run_cases(&m.compiled, &dir, tz)
            .with_context(|| format!("reading {}", dir.display()))?
        {
            match c.failure {
                None => {
                    pass += 1;
                    println!("ok    {} {}", m.name, c.input.display());
                }
                Some(why) => {
                    fail += 1;
                    println!("FAIL  {} {}\n{why}", m.name, c.input.display());
                }
            }
        }
    }
    eprintln!("{pass} passed, {fail} failed");
    if fail > 0 {
        bail!("{fail} mapping case(s) failed");
    }
    Ok(())
}

fn bench(cat: &Catalog, tz: &TimeZone, b: &BenchArgs) -> anyhow::Result<()> {
    let m = find(cat, &b.mapping)?;
    let files =
        cases::inputs(&b.samples).with_context(|| format!("reading {}", b.samples.display()))?;
    let mut inputs = Vec::new();
    for f in &files {
        inputs.push(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?);
    }
    if inputs.is_empty() {
        bail!("no *.json samples in {}", b.samples.display());
    }
    // One pass first: every sample must map, so the figure is not that of refusals.
    for (f, bytes) in files.iter().zip(&inputs) {
        one(m, tz, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    }
    let budget = std::time::Duration::from_secs_f64(b.seconds.max(0.1));
    let start = Instant::now();
    let mut docs = 0u64;
    let mut out_bytes = 0usize;
    while start.elapsed() < budget {
        for bytes in &inputs {
            out_bytes += one(m, tz, bytes).map_err(|e| anyhow::anyhow!(e))?.len();
            docs += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // a rate for people to read
    let rate = docs as f64 / secs;
    println!(
        "{}",
        json!({
            "mapping": m.name,
            "samples": inputs.len(),
            "documents": docs,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "docs_per_sec": rate.round(),
            "us_per_doc": ((1e6 / rate) * 100.0).round() / 100.0,
            "output_bytes": out_bytes,
        })
    );
    eprintln!(
        "mapping {}: {:.0} documents/s, {:.2} µs per document (one thread, bytes → bytes)",
        m.name,
        rate,
        1e6 / rate
    );
    Ok(())
}

/// Bytes in, bytes out: parse, normalise, map, serialise.
fn one(m: &Mapping, tz: &TimeZone, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let raw: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    // As the deliver stage does: an approval is built with only the parts the mapping reads.
    let doc = match cases::sample_instance(&raw, tz)? {
        Some(instance) => crate::map::run(&m.compiled, &m.compiled.approval_input(&instance)),
        None => crate::map::run(&m.compiled, &raw),
    }
    .map_err(|r| format!("{}: {}", r.code, r.message))?;
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}
