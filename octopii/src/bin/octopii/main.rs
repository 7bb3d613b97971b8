//! The `octopii` command line.

mod bench_raft;
mod bench_rpc;
mod bench_wal;
mod certs;
mod report;

use clap::{Parser, Subcommand};

/// Octopii: typed services, verified transfer and replicated state over QUIC.
#[derive(Debug, Parser)]
#[command(name = "octopii", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make certificates: a cluster CA, then one certificate per node.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run a benchmark and print its figures beside a same-run baseline.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Unary calls per second and latency, beside a raw quinn stream echo.
    Rpc(bench_rpc::RpcBenchArgs),
    /// Write-ahead log appends per second and latency, beside write+fdatasync.
    Wal(bench_wal::WalBenchArgs),
    /// Committed raft proposals per second and latency, beside WAL appends.
    Raft(bench_raft::RaftBenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(command) => certs::run(command),
        Command::Bench(BenchCommand::Rpc(args)) => bench_rpc::run(args),
        Command::Bench(BenchCommand::Wal(args)) => bench_wal::run(args),
        Command::Bench(BenchCommand::Raft(args)) => bench_raft::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
