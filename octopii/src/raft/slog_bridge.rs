//! Forwards raft-rs's `slog` records to `tracing` (target `octopii::raft`),
//! so one subscriber sees everything and nothing is printed.

use std::fmt::Write;

use slog::{Drain, KV, Level, Never, OwnedKVList, Record, Serializer};

/// A `slog` drain that re-emits each record as a `tracing` event.
pub(crate) struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        // Formats a record only if a subscriber wants its level.
        macro_rules! forward {
            ($level:expr) => {
                if tracing::enabled!(target: "octopii::raft", $level) {
                    let text = render(record, values);
                    tracing::event!(target: "octopii::raft", $level, "{text}");
                }
            };
        }
        match record.level() {
            Level::Critical | Level::Error => forward!(tracing::Level::ERROR),
            Level::Warning => forward!(tracing::Level::WARN),
            Level::Info => forward!(tracing::Level::INFO),
            Level::Debug => forward!(tracing::Level::DEBUG),
            Level::Trace => forward!(tracing::Level::TRACE),
        }
        Ok(())
    }
}

/// The record's message followed by its key-value pairs.
fn render(record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut text = FieldText(record.msg().to_string());
    let _ = record.kv().serialize(record, &mut text);
    let _ = values.serialize(record, &mut text);
    text.0
}

/// Collects `slog` key-value pairs as ` key=value` text.
struct FieldText(String);

impl Serializer for FieldText {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// The logger handed to raft-rs (which adds `raft_id` itself).
pub(crate) fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}
