//! A transfer's arguments frame: decoded, and a file destination resolved
//! inside the receive directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| octopii::fuzzing::chunk_request(data));
