//! Log-frame bodies given a valid CRC-32C and COBS framing, so the
//! fuzzer's bytes reach the schema parser (tags, varints, array lengths,
//! the header's checks) instead of stopping at the checksum. The first
//! byte picks the dimensions.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&d, body)) = data.split_first() else {
        return;
    };
    let mut frame = common::frame_log_body(body);
    common::decode_checked(&mut frame, common::dims(d));
});
