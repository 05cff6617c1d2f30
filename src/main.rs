//! The `wecom-bridge` command line.

use clap::Parser;

/// mimalloc instead of glibc malloc: the delivery path allocates and frees many small JSON
/// values per approval on many threads, where glibc spent about a third of the bridge's CPU
/// (`_int_malloc`, `_int_free`, `malloc_consolidate`). It costs more peak memory under a
/// backlog (BENCHMARKS.md, "End to end", session 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = wecom_bridge::cli::Cli::parse();
    wecom_bridge::cli::run(cli)
}
