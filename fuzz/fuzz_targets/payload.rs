//! Payloads re-framed with a valid id and CRC: exercises the postcard
//! schema and every value check. The first byte picks the format version
//! (v1, or v2 with the plant, safe action and extension records: the
//! action-history and realism records' checks).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&v, payload)) = data.split_first() else {
        return;
    };
    common::check(&common::frame(1 + u16::from(v & 1), payload));
});
