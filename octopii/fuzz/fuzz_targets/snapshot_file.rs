//! A snapshot file's header and checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| octopii::fuzzing::snapshot_file(data));
