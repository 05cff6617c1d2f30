//! The `wecom-bridge` command line.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = wecom_bridge::cli::Cli::parse();
    wecom_bridge::cli::run(cli)
}
