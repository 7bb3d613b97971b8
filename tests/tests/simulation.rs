//! Seeded simulations of Octopii nodes (see `octopii_tests::sim`).
//!
//! `OCTOPII_SIM_SEED=<n>` runs one seed; `OCTOPII_SIM_SEEDS=<count>` runs
//! that many from a base seed (`OCTOPII_SIM_BASE`, default 0), each
//! against one server, a raft group of three, and a raft group of three
//! that takes snapshots and changes its membership (pick one by the
//! test's name). Without either, the CI seeds run. Every run prints
//! `seed=<n> ops=<ops> faults=<faults> digest=<hex>`; a failing seed prints
//! the command that replays it.

use std::time::Instant;

use octopii_tests::sim::{self, Plan};

#[global_allocator]
static HEAP: sim::memory::Counting = sim::memory::Counting;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs the seeds asked for (`default` of them from 0 when nothing is
/// asked) under `plan`, printing each run's line; panics at the first
/// failing seed with its faults and the command that replays it.
fn run_seeds(test: &str, plan: Plan, default: u64) {
    if std::env::var_os("RUST_LOG").is_some() {
        // A replayed seed's logs, e.g. RUST_LOG=octopii=debug.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(sim::SimTime)
            .with_test_writer()
            .try_init();
    }
    let (base, count) = match (env("OCTOPII_SIM_SEED"), env("OCTOPII_SIM_SEEDS")) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (env("OCTOPII_SIM_BASE").unwrap_or(0), count),
        (None, None) => (0, default),
    };
    let wall = Instant::now();
    let mut simulated = std::time::Duration::ZERO;
    for seed in base..base + count {
        let report = sim::run(seed, plan);
        println!("{}", report.line());
        if count == 1 {
            // A replayed seed shows what happened to it.
            println!("faults:\n  {}", report.faults.join("\n  "));
            println!("members:\n  {}", report.members.join("\n  "));
            println!("heap: {} KiB at most", report.heap_peak >> 10);
        }
        simulated += report.simulated;
        if let Err(why) = &report.verdict {
            panic!(
                "{}\n{why}\nfaults:\n  {}\nmembers:\n  {}\nreplay: OCTOPII_SIM_SEED={seed} cargo test -p octopii-tests --test simulation {test} -- --nocapture",
                report.line(),
                report.faults.join("\n  "),
                report.members.join("\n  ")
            );
        }
        assert!(
            report.history.completed() > 0,
            "{}: nothing completed",
            report.line()
        );
        assert!(report.heap_peak > 0, "the heap is counted");
    }
    let wall = wall.elapsed();
    println!(
        "{test}: {count} seeds in {wall:.1?}: {:.0} simulated s per wall s, {:.0} seeds per minute",
        simulated.as_secs_f64() / wall.as_secs_f64(),
        count as f64 * 60.0 / wall.as_secs_f64()
    );
}

#[test]
fn the_heap_a_thread_takes_is_counted() {
    let heap = sim::memory::Usage::start();
    let held = vec![1u8; 1 << 20];
    assert!(heap.peak() >= 1 << 20, "{}", heap.peak());
    drop(held);
}

#[test]
fn one_server_seeds_keep_their_histories_linearizable() {
    run_seeds(
        "one_server_seeds_keep_their_histories_linearizable",
        Plan::default(),
        200,
    );
}

#[test]
fn raft_seeds_keep_their_histories_linearizable_and_members_agree() {
    run_seeds(
        "raft_seeds_keep_their_histories_linearizable_and_members_agree",
        Plan::raft(),
        20,
    );
}

#[test]
fn changing_raft_seeds_snapshot_change_membership_and_stay_linearizable() {
    run_seeds(
        "changing_raft_seeds_snapshot_change_membership_and_stay_linearizable",
        Plan::raft_changing(),
        20,
    );
}

/// Seeds that found bugs, kept green (see `docs/TESTING.md`).
/// (The raft and changing-raft seeds that found bugs are in the CI sets,
/// or their runs changed with the plan: see the table there.)
fn regression_seeds() -> Vec<(Plan, u64)> {
    [9, 43, 103, 158, 169, 237]
        .map(|seed| (Plan::default(), seed))
        .into()
}

#[test]
fn regression_seeds_stay_green() {
    for (plan, seed) in regression_seeds() {
        let report = sim::run(seed, plan);
        assert!(
            report.verdict.is_ok(),
            "{}: {:?}",
            report.line(),
            report.verdict
        );
    }
}

#[test]
fn one_seed_replays_the_same_run() {
    for (plan, seeds) in [
        (Plan::default(), [7, 1234]),
        (Plan::raft(), [3, 5]),
        (Plan::raft_changing(), [6, 12]),
    ] {
        for seed in seeds {
            let first = sim::run(seed, plan);
            let second = sim::run(seed, plan);
            assert_eq!(first.line(), second.line(), "seed {seed} replays");
            assert_eq!(
                first.net, second.net,
                "seed {seed}: the network did the same"
            );
        }
        let other = sim::run(seeds[0] + 1, plan);
        assert_ne!(
            sim::run(seeds[0], plan).history.digest(),
            other.history.digest(),
            "another seed is another run"
        );
    }
}

/// The line a child process running `test` for `seed` printed.
fn line_in_another_process(test: &str, seed: u64) -> String {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env("OCTOPII_SIM_SEED", seed.to_string())
        .env_remove("OCTOPII_SIM_SEEDS")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        // The harness may have begun the line ("test … ... ").
        .find_map(|line| Some(format!("seed={}", line.split_once("seed=")?.1)))
        .unwrap_or_else(|| panic!("no run line from the child: {stdout}"))
}

/// What a failing seed's replay command relies on: another process runs
/// the seed the same way (nothing random per process, such as generated
/// keys or tokio's choice among ready branches, steers a run).
#[test]
fn one_seed_replays_in_another_process() {
    for (test, plan, seed) in [
        (
            "raft_seeds_keep_their_histories_linearizable_and_members_agree",
            Plan::raft(),
            3,
        ),
        (
            "changing_raft_seeds_snapshot_change_membership_and_stay_linearizable",
            Plan::raft_changing(),
            7,
        ),
    ] {
        let here = sim::run(seed, plan).line();
        assert_eq!(line_in_another_process(test, seed), here, "{test}");
    }
}
