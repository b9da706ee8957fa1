//! Payloads re-framed with a valid id and CRC: exercises the postcard
//! schema and every value check.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(&common::frame(data)));
