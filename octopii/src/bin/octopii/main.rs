//! The `octopii` command line.

mod bench_raft;
mod bench_raft_processes;
mod bench_rpc;
mod bench_streaming;
mod bench_transfer;
mod bench_wal;
mod certs;
mod health;
mod node_args;
mod report;
mod send;
mod serve;

use clap::{Parser, Subcommand};

/// What a command fails with: the library's error or one of the command's
/// own (a benchmark's helper process or task that failed, say).
type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Receive chunk transfers into a directory until interrupted.
    Serve(serve::ServeArgs),
    /// Send a file to one or many peers, verified end to end.
    Send(send::SendArgs),
    /// Ask a node whether it, or one of its services, is serving: prints
    /// SERVING (exit 0), NOT_SERVING or UNKNOWN (exit 1).
    Health(health::HealthArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Unary calls per second and latency, beside a raw quinn stream echo;
    /// with `--streaming`, streamed items per second beside raw quinn.
    Rpc(bench_rpc::RpcBenchArgs),
    /// Write-ahead log appends per second and latency, beside write+fdatasync.
    Wal(bench_wal::WalBenchArgs),
    /// Verified file transfer throughput and peak RSS, beside a raw stream copy.
    Transfer(bench_transfer::TransferBenchArgs),
    /// The receiving process of `bench transfer` (started by it).
    #[command(hide = true)]
    TransferReceiver(bench_transfer::ReceiverArgs),

    /// Committed raft proposals per second and latency, beside WAL appends.
    Raft(bench_raft::RaftBenchArgs),
    /// One member process of `bench raft` (started by it).
    #[command(hide = true)]
    RaftMember(bench_raft_processes::MemberArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(command) => certs::run(command),
        Command::Bench(BenchCommand::Rpc(args)) => bench_rpc::run(args),
        Command::Bench(BenchCommand::Wal(args)) => bench_wal::run(args),
        Command::Bench(BenchCommand::Transfer(args)) => bench_transfer::run(args),
        Command::Bench(BenchCommand::TransferReceiver(args)) => bench_transfer::run_receiver(args),
        Command::Serve(args) => serve::run(args),
        Command::Send(args) => send::run(args),
        Command::Health(args) => match health::run(args) {
            Ok(false) => return std::process::ExitCode::FAILURE,
            other => other.map(drop),
        },

        Command::Bench(BenchCommand::Raft(args)) => bench_raft::run(args),
        Command::Bench(BenchCommand::RaftMember(args)) => bench_raft_processes::run_member(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
