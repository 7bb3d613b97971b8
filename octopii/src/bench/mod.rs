//! Measurement harnesses behind `octopii bench` and the criterion benches.
//!
//! Each harness sets up Octopii and a baseline side by side (the same bytes
//! through plain quinn, plain file writes, …) so a run can report the ratio
//! between them: absolute figures on a shared machine drift, ratios measured
//! in the same run much less.

pub mod rpc;
pub mod streaming;
pub mod tarpc;
