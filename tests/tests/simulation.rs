//! Seeded simulations of Octopii nodes (see `octopii_tests::sim`).
//!
//! `OCTOPII_SIM_SEED=<n>` runs one seed; `OCTOPII_SIM_SEEDS=<count>` runs
//! that many from a base seed (`OCTOPII_SIM_BASE`, default 0). Without
//! either, a few seeds run, as in CI. Every run prints
//! `seed=<n> ops=<ops> faults=<faults> digest=<hex>`; a failing seed prints
//! the command that replays it.

use std::time::Instant;

use octopii_tests::sim::{self, Plan};

/// Seeds run when nothing is asked for.
const CI_SEEDS: u64 = 20;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeds_keep_their_histories_linearizable() {
    let (base, count) = match (env("OCTOPII_SIM_SEED"), env("OCTOPII_SIM_SEEDS")) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (env("OCTOPII_SIM_BASE").unwrap_or(0), count),
        (None, None) => (0, CI_SEEDS),
    };
    let wall = Instant::now();
    let mut simulated = std::time::Duration::ZERO;
    for seed in base..base + count {
        let report = sim::run(seed, Plan::default());
        println!("{}", report.line());
        simulated += report.simulated;
        if let Err(why) = &report.verdict {
            panic!(
                "{}\n{why}\nfaults:\n  {}\nreplay: OCTOPII_SIM_SEED={seed} cargo test -p octopii-tests --test simulation -- --nocapture",
                report.line(),
                report.faults.join("\n  ")
            );
        }
        assert!(
            report.history.completed() > 0,
            "{}: nothing completed",
            report.line()
        );
    }
    let wall = wall.elapsed();
    println!(
        "{count} seeds in {wall:.1?}: {:.0} simulated s per wall s, {:.0} seeds per minute",
        simulated.as_secs_f64() / wall.as_secs_f64(),
        count as f64 * 60.0 / wall.as_secs_f64()
    );
}

/// Seeds that found bugs, kept green (see `docs/TESTING.md`).
const REGRESSION_SEEDS: [u64; 6] = [9, 43, 103, 158, 169, 237];

#[test]
fn regression_seeds_stay_green() {
    for seed in REGRESSION_SEEDS {
        let report = sim::run(seed, Plan::default());
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
    let plan = Plan::default();
    for seed in [7, 1234] {
        let first = sim::run(seed, plan);
        let second = sim::run(seed, plan);
        assert_eq!(first.line(), second.line(), "seed {seed} replays");
        assert_eq!(
            first.net, second.net,
            "seed {seed}: the network did the same"
        );
    }
    let other = sim::run(8, plan);
    assert_ne!(
        sim::run(7, plan).history.digest(),
        other.history.digest(),
        "another seed is another run"
    );
}

#[test]
fn raft_probe() {
    let base = env("OCTOPII_SIM_BASE").unwrap_or(0);
    let count = env("OCTOPII_SIM_SEEDS").unwrap_or(10);
    let wall = Instant::now();
    let mut failed = 0;
    for seed in base..base + count {
        let report = sim::run(seed, Plan::raft());
        println!("{} {:?} completed {} sim {:?}", report.line(), report.verdict, report.history.completed(), report.simulated);
        if report.verdict.is_err() { failed += 1; println!("faults:\n  {}", report.faults.join("\n  ")); }
    }
    println!("failed {failed} wall {:?}", wall.elapsed());
}
