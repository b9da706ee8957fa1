//! Log frames from raw bytes (`log::decode_frame`): COBS, the length
//! limits and the CRC, as a host reads a damaged UART stream. The first
//! byte picks the dimensions the decoder is told (none, or small ones).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&d, rest)) = data.split_first() else {
        return;
    };
    let mut frame = rest.to_vec();
    common::decode_checked(&mut frame, common::dims(d));
});
