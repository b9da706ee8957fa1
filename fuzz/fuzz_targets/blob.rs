//! Whole blobs, framing included: mostly exercises framing and the CRC.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(data));
