//! Bytes received on an RPC stream: frames, request headers, responses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| octopii::fuzzing::rpc_frames(data));
