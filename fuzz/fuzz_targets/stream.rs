//! The host's stream reader (`tinyppo logs decode`, `logs capture`,
//! `finetune`'s import): arbitrary bytes fed in arbitrary chunks. The
//! first byte sets the chunk size. Checks that it never panics, that the
//! counts add up, and that the chunking does not change the result.
#![no_main]

use tinyppo_trainer::logs::{decode_stream, LogReader};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&c, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(c).max(1);
    let mut r = LogReader::new();
    for part in bytes.chunks(chunk) {
        r.push(part);
    }
    let chunked = r.finish();
    let whole = decode_stream(bytes);
    // (Not `==` on the logs: a NaN in a record is not equal to itself.)
    let shape = |l: &tinyppo_trainer::logs::DecodedLog| {
        (
            l.frames_ok,
            l.frames_bad,
            l.bad.clone(),
            l.streams.clone(),
            l.transitions.len(),
            l.episode_ends.len(),
            l.drops.len(),
            l.ends.len(),
        )
    };
    assert_eq!(
        shape(&chunked),
        shape(&whole),
        "chunks of {chunk} decode differently"
    );
    let b = &whole.bad;
    assert_eq!(
        whole.frames_bad,
        b.cobs + b.crc + b.schema + b.truncated,
        "bad frames by cause"
    );
    for t in &whole.transitions {
        assert!(t.stream < whole.streams.len().max(1));
    }
    // The report never panics either (no registry: plant codes unnamed).
    let _ = whole.episode_returns();
    let _ = whole.mean_return();
    let _ = whole.episodes_seen();
});
