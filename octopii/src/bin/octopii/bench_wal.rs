//! `octopii bench wal`: appends per second and latency of the write-ahead
//! log with fsync on, beside a same-run baseline of a plain loop of
//! `write` + `fdatasync` per record.
//!
//! The baseline is measured twice. `baseline` is the plain loop.
//! `baseline-busy` is the same loop while another thread keeps one CPU
//! busy: on virtual machines whose idle CPUs wake slowly, a thread that
//! sleeps in `fdatasync` with every CPU idle waits for the wake-up rather
//! than for the disk, and the busy row shows what the disk itself sustains.
//! Ratios are given against both.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use octopii::OctopiiError;
use octopii::wal::{Wal, WalOptions};

use crate::Result;
use crate::report::work_dir;

/// Arguments of `octopii bench wal`.
#[derive(Debug, clap::Args)]
pub struct WalBenchArgs {
    /// Seconds each measurement runs (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 3.0)]
    pub duration_secs: f64,
    /// Directory to write in (default: a new temporary directory, removed
    /// afterwards). Put it on the disk you want to measure.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Concurrent writer counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub writers: Vec<usize>,
    /// Record sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    pub record_sizes: Vec<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One thread: `write` + `fdatasync` per record.
    Baseline,
    /// The same loop while another thread keeps a CPU busy.
    BaselineBusy,
    /// The WAL with this many concurrent writers.
    Wal(usize),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::BaselineBusy => "baseline-busy",
            Kind::Wal(_) => "wal",
        }
    }

    fn label(self) -> String {
        match self {
            Kind::Wal(n) => format!("WAL x{n}"),
            other => other.name().to_string(),
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone)]
struct Row {
    kind: Kind,
    record_bytes: usize,
    appends: u64,
    seconds: f64,
    fsyncs: u64,
    p50: Duration,
    p99: Duration,
    /// Appends per second over the plain baseline's (same record size).
    ratio: f64,
    /// Appends per second over the busy baseline's (same record size).
    ratio_busy: f64,
}

impl Row {
    fn appends_per_sec(&self) -> f64 {
        self.appends as f64 / self.seconds
    }

    fn fsyncs_per_sec(&self) -> f64 {
        self.fsyncs as f64 / self.seconds
    }

    fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.appends as f64 / self.fsyncs as f64
        }
    }
}

/// Runs the WAL benchmark.
pub fn run(args: WalBenchArgs) -> Result<()> {
    if !(args.duration_secs > 0.0 && args.duration_secs.is_finite()) {
        return Err(OctopiiError::Config {
            field: "--duration-secs",
            message: "must be a positive number of seconds".to_string(),
        }
        .into());
    }
    if args.writers.is_empty() || args.writers.contains(&0) {
        return Err(OctopiiError::Config {
            field: "--writers",
            message: "give one or more writer counts, none zero".to_string(),
        }
        .into());
    }
    if args.record_sizes.is_empty() {
        return Err(OctopiiError::Config {
            field: "--record-sizes",
            message: "give one or more record sizes".to_string(),
        }
        .into());
    }
    let duration = Duration::from_secs_f64(args.duration_secs);
    let (dir, _temp) = work_dir(args.dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().build()?;

    let mut rows = Vec::new();
    for &size in &args.record_sizes {
        let mut rates = [0.0f64; 2];
        for (slot, busy) in [false, true].into_iter().enumerate() {
            let base_dir = dir.join(format!("baseline-{size}"));
            let row = run_baseline(&base_dir, size, duration, busy)?;
            remove_dir(&base_dir);
            rates[slot] = row.appends_per_sec();
            progress(&args, &row);
            rows.push(row);
        }
        for &writers in &args.writers {
            let wal_dir = dir.join(format!("wal-{size}-{writers}"));
            let row = runtime.block_on(run_wal(&wal_dir, size, writers, duration))?;
            remove_dir(&wal_dir);
            progress(&args, &row);
            rows.push(row);
        }
        for row in rows.iter_mut().filter(|r| r.record_bytes == size) {
            row.ratio = ratio(row.appends_per_sec(), rates[0]);
            row.ratio_busy = ratio(row.appends_per_sec(), rates[1]);
        }
    }

    if args.json {
        println!("{}", to_json(&rows, &dir, args.duration_secs));
    } else {
        print!("{}", to_table(&rows, &dir, args.duration_secs));
    }
    Ok(())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn remove_dir(dir: &Path) {
    // Best effort: the figures are already taken.
    let _ = std::fs::remove_dir_all(dir);
}

fn progress(args: &WalBenchArgs, row: &Row) {
    if !args.json {
        eprintln!(
            "measured {:>13} {:>6} B: {:>10.0} appends/s",
            row.kind.label(),
            row.record_bytes,
            row.appends_per_sec()
        );
    }
}

fn payload(size: usize, salt: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ salt) as u8)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The measuring window: a warm-up of a tenth of the duration, then the
/// duration itself. Only operations begun inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(duration: Duration) -> Self {
        let start = Instant::now() + duration / 10;
        Window {
            start,
            end: start + duration,
        }
    }

    fn seconds(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// Keeps one CPU busy until dropped.
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        Spinner {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A plain loop: `write` one record, `fdatasync`, repeat; with `busy`, while
/// another thread spins.
fn run_baseline(dir: &Path, size: usize, duration: Duration, busy: bool) -> Result<Row> {
    std::fs::create_dir_all(dir).map_err(|e| OctopiiError::file(dir, e))?;
    let path = dir.join("baseline.log");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| OctopiiError::file(&path, e))?;
    let record = payload(size, 0);
    let spinner = busy.then(Spinner::start);
    let mut latencies = Vec::new();
    let window = Window::new(duration);
    loop {
        let began = Instant::now();
        if began >= window.end {
            break;
        }
        file.write_all(&record)
            .and_then(|()| file.sync_data())
            .map_err(|e| OctopiiError::file(&path, e))?;
        if began >= window.start {
            latencies.push(began.elapsed());
        }
    }
    drop(spinner);
    latencies.sort_unstable();
    let appends = latencies.len() as u64;
    Ok(Row {
        kind: if busy {
            Kind::BaselineBusy
        } else {
            Kind::Baseline
        },
        record_bytes: size,
        appends,
        seconds: window.seconds(),
        fsyncs: appends,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        ratio: 0.0,
        ratio_busy: 0.0,
    })
}

/// `writers` tasks appending `size`-byte records to one WAL, each waiting
/// for its append to be durable before the next.
async fn run_wal(dir: &Path, size: usize, writers: usize, duration: Duration) -> Result<Row> {
    let wal = Wal::open(dir, WalOptions::default())?;
    let window = Window::new(duration);
    // The fsyncs of the window: counted at its start by a helper thread.
    let counter = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            std::thread::sleep(window.start.saturating_duration_since(Instant::now()));
            wal.stats().fsyncs
        })
    };
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let wal = wal.clone();
        let record = payload(size, w);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let began = Instant::now();
                if began >= window.end {
                    break;
                }
                wal.append(&record).await?;
                if began >= window.start {
                    latencies.push(began.elapsed());
                }
            }
            Ok::<_, OctopiiError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        let mine = task
            .await
            .map_err(|e| format!("benchmark writer failed: {e}"))??;
        latencies.extend(mine);
    }
    let fsyncs_at_start = counter
        .join()
        .map_err(|_| "benchmark counter thread failed")?;
    let fsyncs = wal.stats().fsyncs - fsyncs_at_start;
    drop(wal);
    latencies.sort_unstable();
    Ok(Row {
        kind: Kind::Wal(writers),
        record_bytes: size,
        appends: latencies.len() as u64,
        seconds: window.seconds(),
        fsyncs,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        ratio: 0.0,
        ratio_busy: 0.0,
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn to_table(rows: &[Row], dir: &Path, duration_secs: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "octopii bench wal: fsync on, {duration_secs} s per row after a warm-up of a tenth, in {}",
        dir.display()
    );
    let _ = writeln!(
        out,
        "baseline: one thread, write + fdatasync per record (baseline-busy: the same while \
         another thread keeps a CPU busy)\nWAL xN: N tasks each appending and awaiting, \
         default options (group commit)\n"
    );
    let _ = writeln!(
        out,
        "{:>7}  {:>13}  {:>10}  {:>8}  {:>8}  {:>9}  {:>9}  {:>11}  {:>8}",
        "record",
        "writers",
        "appends/s",
        "p50 µs",
        "p99 µs",
        "fsyncs/s",
        "rec/fsync",
        "vs baseline",
        "vs busy"
    );
    for row in rows {
        let writers = match row.kind {
            Kind::Wal(n) => n.to_string(),
            other => other.name().to_string(),
        };
        let _ = writeln!(
            out,
            "{:>5} B  {:>13}  {:>10.0}  {:>8.0}  {:>8.0}  {:>9.0}  {:>9.1}  {:>10.1}×  {:>7.1}×",
            row.record_bytes,
            writers,
            row.appends_per_sec(),
            micros(row.p50),
            micros(row.p99),
            row.fsyncs_per_sec(),
            row.records_per_fsync(),
            row.ratio,
            row.ratio_busy
        );
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".to_string()
    }
}

fn to_json(rows: &[Row], dir: &Path, duration_secs: f64) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "{{\"kind\":{},\"writers\":{},\"record_bytes\":{},\"appends\":{},\
                 \"seconds\":{},\"appends_per_sec\":{},\"p50_us\":{},\"p99_us\":{},\
                 \"fsyncs_per_sec\":{},\"records_per_fsync\":{},\"ratio_to_baseline\":{},\
                 \"ratio_to_busy_baseline\":{}}}",
                json_string(row.kind.name()),
                match row.kind {
                    Kind::Wal(n) => n,
                    _ => 1,
                },
                row.record_bytes,
                row.appends,
                json_number(row.seconds),
                json_number(row.appends_per_sec()),
                json_number(micros(row.p50)),
                json_number(micros(row.p99)),
                json_number(row.fsyncs_per_sec()),
                json_number(row.records_per_fsync()),
                json_number(row.ratio),
                json_number(row.ratio_busy)
            )
        })
        .collect();
    format!(
        "{{\"bench\":\"wal\",\"fsync\":true,\"duration_secs\":{},\"dir\":{},\"rows\":[{}]}}",
        json_number(duration_secs),
        json_string(&dir.display().to_string()),
        rows.join(",")
    )
}
