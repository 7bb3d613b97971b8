//! `octopii bench wal` (being written).

/// Arguments of `octopii bench wal`.
#[derive(Debug, clap::Args)]
pub struct WalBenchArgs {}

/// Runs the WAL benchmark.
pub fn run(_args: WalBenchArgs) -> octopii::Result<()> {
    Ok(())
}
