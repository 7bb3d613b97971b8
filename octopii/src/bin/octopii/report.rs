//! What every `octopii bench` prints: a baseline and Octopii measured in the
//! same run, side by side, with the ratio; as a table or one JSON object.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use octopii::OctopiiError;

use crate::Result;

/// Parses a `--duration-secs` value.
pub fn duration_arg(secs: f64) -> Result<Duration> {
    if secs.is_finite() && secs > 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(OctopiiError::Config {
            field: "--duration-secs",
            message: "must be a positive number of seconds".into(),
        }
        .into())
    }
}

/// The `--dir` to work in, made if missing, or else a temporary directory
/// (removed when the returned guard drops).
pub fn work_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| OctopiiError::file(dir, e))?;
            Ok((dir.to_path_buf(), None))
        }
        None => {
            let temp = tempfile::tempdir()?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

/// The measuring window of a run: a warm-up of a tenth of the duration,
/// then the duration itself.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    /// A window opening after the warm-up.
    pub fn new(duration: Duration) -> Self {
        let start = Instant::now() + duration / 10;
        Window {
            start,
            end: start + duration,
        }
    }

    /// The start time of the next operation, or `None` once the window closed.
    pub fn begin(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.end).then_some(now)
    }

    /// Records an operation begun at `began`, unless it was warm-up.
    pub fn record(&self, latencies: &mut Latencies, began: Instant) {
        if began >= self.start {
            latencies.record(began.elapsed());
        }
    }
}

/// Waits for every caller task and merges their latencies.
pub async fn gather(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<Result<Latencies>>>,
) -> Result<Latencies> {
    let mut all = Latencies::default();
    for task in tasks.into_iter().collect::<Vec<_>>() {
        let part = task
            .await
            .map_err(|e| format!("benchmark task failed: {e}"))??;
        all.merge(part);
    }
    Ok(all)
}

/// Latencies of completed operations, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
}

impl Latencies {
    /// Records one operation.
    pub fn record(&mut self, took: Duration) {
        self.micros
            .push(took.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// Adds another caller's records.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// Operations recorded.
    pub fn count(&self) -> usize {
        self.micros.len()
    }

    /// The `p`-th percentile (0–100), in microseconds.
    fn percentile(&mut self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        self.micros.sort_unstable();
        let rank = ((p / 100.0) * (self.micros.len() - 1) as f64).round() as usize;
        f64::from(self.micros[rank])
    }
}

/// One side of a row: rate and latency.
#[derive(Debug, Clone, Copy)]
struct Side {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Side {
    fn of(mut latencies: Latencies, seconds: f64) -> Side {
        Side {
            per_sec: latencies.count() as f64 / seconds,
            p50_us: latencies.percentile(50.0),
            p99_us: latencies.percentile(99.0),
        }
    }
}

struct Row {
    case: String,
    unit: &'static str,
    baseline: Side,
    octopii: Side,
}

/// Rows of one benchmark.
pub struct Table {
    bench: &'static str,
    setup: String,
    rows: Vec<Row>,
}

impl Table {
    /// An empty table for `bench`, described by `setup`.
    pub fn new(bench: &'static str, setup: String) -> Self {
        Table {
            bench,
            setup,
            rows: Vec::new(),
        }
    }

    /// Adds a row comparing `octopii` with `baseline`, both measured over
    /// `seconds`; `unit` names what was counted.
    pub fn compare(
        &mut self,
        case: String,
        unit: &'static str,
        seconds: f64,
        baseline: Latencies,
        octopii: Latencies,
    ) {
        self.rows.push(Row {
            case,
            unit,
            baseline: Side::of(baseline, seconds),
            octopii: Side::of(octopii, seconds),
        });
    }

    /// Prints the table, or one JSON object when `json`.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json());
        } else {
            print!("{}", self.text());
        }
    }

    fn text(&self) -> String {
        let mut out = format!("octopii bench {}: {}\n", self.bench, self.setup);
        // The case column fits the longest case.
        let w = self
            .rows
            .iter()
            .map(|r| r.case.len())
            .max()
            .unwrap_or(0)
            .max(14);
        let _ = writeln!(
            out,
            "{:<w$} {:>14} {:>9} {:>9} {:>14} {:>9} {:>9} {:>7} {:>9}",
            "case",
            "baseline/s",
            "p50 µs",
            "p99 µs",
            "octopii/s",
            "p50 µs",
            "p99 µs",
            "ratio",
            "p50 +%"
        );
        for row in &self.rows {
            let (b, o) = (row.baseline, row.octopii);
            let _ = writeln!(
                out,
                "{:<w$} {:>14.0} {:>9.0} {:>9.0} {:>14.0} {:>9.0} {:>9.0} {:>7.2} {:>9.1}",
                row.case,
                b.per_sec,
                b.p50_us,
                b.p99_us,
                o.per_sec,
                o.p50_us,
                o.p99_us,
                ratio(o.per_sec, b.per_sec),
                (ratio(o.p50_us, b.p50_us) - 1.0) * 100.0,
            );
        }
        let unit = self.rows.first().map_or("ops", |r| r.unit);
        let _ = writeln!(
            out,
            "(rates in {unit} per second; ratio = octopii / baseline; p50 +% = added median latency)"
        );
        out
    }

    fn json(&self) -> String {
        let side = |s: Side| {
            format!(
                "{{\"per_sec\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
                s.per_sec, s.p50_us, s.p99_us
            )
        };
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"case\":{:?},\"unit\":{:?},\"baseline\":{},\"octopii\":{},\"ratio\":{:.3}}}",
                    r.case,
                    r.unit,
                    side(r.baseline),
                    side(r.octopii),
                    ratio(r.octopii.per_sec, r.baseline.per_sec)
                )
            })
            .collect();
        format!(
            "{{\"bench\":{:?},\"setup\":{:?},\"rows\":[{}]}}",
            self.bench,
            self.setup,
            rows.join(",")
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}
