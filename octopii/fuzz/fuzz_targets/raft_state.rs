//! A `raft-state` file, decoded and checked as raft storage opens it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| octopii::fuzzing::raft_state(data));
