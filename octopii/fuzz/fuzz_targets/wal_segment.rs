//! A WAL segment file, checked as recovery checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| octopii::fuzzing::wal_segment(data));
