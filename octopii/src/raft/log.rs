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
        let mut fields = FieldText(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "octopii::raft", "{message}{fields}")
            }
            Level::Warning => tracing::warn!(target: "octopii::raft", "{message}{fields}"),
            Level::Info => tracing::info!(target: "octopii::raft", "{message}{fields}"),
            Level::Debug => tracing::debug!(target: "octopii::raft", "{message}{fields}"),
            Level::Trace => tracing::trace!(target: "octopii::raft", "{message}{fields}"),
        }
        Ok(())
    }
}

/// Collects `slog` key-value pairs as ` key=value` text.
struct FieldText(String);

impl Serializer for FieldText {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// The logger handed to raft-rs for node `id`.
pub(crate) fn logger(id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("raft_id" => id))
}
