//! The `wecom-bridge` command line.

use clap::Parser;

/// mimalloc instead of glibc malloc: the delivery path allocates and frees many small JSON
/// values per approval on many threads, where glibc spent about a third of the bridge's CPU
/// (`_int_malloc`, `_int_free`, `malloc_consolidate`) and kept one arena per busy thread
/// (BENCHMARKS.md, "End to end", session 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = wecom_bridge::cli::Cli::parse();
    wecom_bridge::cli::run(cli)
}
