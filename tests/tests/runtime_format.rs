//! Policy blob formats v1 and v2: golden bytes written by hand from
//! `docs/FORMAT.md` (v2 is what the encoder writes; v1 blobs from older
//! exports must still load and compute the same), framing, and one test per
//! rejection class.

use tinyppo_runtime::format::{self, Blob, MAX_ABS_VALUE, MAX_INT8_SCALE};
use tinyppo_runtime::realism::{RealismError, RealismField, RealismSpec};
use tinyppo_runtime::{
    Activation, BlobSpec, EncodeError, Encoding, Field, FormatError, LayerSpec, Policy, WeightsSpec,
};

use crate::util::{crc32c_ref, f32_bytes, frame_with, payload_of, Net, RawPayload, TestRng};

// ---------------------------------------------------------------------------
// The tiny example blob: obs 2, act 1, hidden [2], tanh.
//
//   obs_mean [0.5, −1.0], obs_inv_std [2.0, 0.25], obs_clip 5.0,
//   action bounds [−2.0, 2.0], log_std [−0.5],
//   int8:  layer 0  q = [[127, −64], [1, −127]], scales [0.5, 0.25], bias [0.0, −0.125]
//          layer 1  q = [[100, −100]],            scales [2⁻⁷],      bias [0.25]
//   f32:   layer 0  w = [[1.0, −0.5], [0.25, 2.0]],                   bias [0.0, −0.125]
//          layer 1  w = [[0.5, −1.5]],                                bias [0.25]
//   v2:    plant 0x80 (the first application code), safe_action [−2.0]
//          (the low bound, as for a heater), no extensions
//
// f32 bit patterns used below (IEEE-754 binary32, written little-endian):
//   0.0 = 0x00000000   0.25 = 0x3E800000   0.5 = 0x3F000000   1.0 = 0x3F800000
//   2.0 = 0x40000000   5.0  = 0x40A00000   2⁻⁷ = 0x3C000000
//  −0.125 = 0xBE000000  −0.5 = 0xBF000000  −1.0 = 0xBF800000  −1.5 = 0xBFC00000
//  −2.0 = 0xC0000000

const Q0: [i8; 4] = [127, -64, 1, -127];
const S0: [f32; 2] = [0.5, 0.25];
const Q1: [i8; 2] = [100, -100];
const S1: [f32; 1] = [0.0078125];
const W0: [f32; 4] = [1.0, -0.5, 0.25, 2.0];
const W1: [f32; 2] = [0.5, -1.5];
const B0: [f32; 2] = [0.0, -0.125];
const B1: [f32; 1] = [0.25];

fn tiny_spec<'a>(layers: &'a [LayerSpec<'a>]) -> BlobSpec<'a> {
    BlobSpec {
        obs_dim: 2,
        act_dim: 1,
        hidden: &[2],
        activation: Activation::Tanh,
        obs_mean: &[0.5, -1.0],
        obs_inv_std: &[2.0, 0.25],
        obs_clip: 5.0,
        action_low: &[-2.0],
        action_high: &[2.0],
        log_std: &[-0.5],
        layers,
        plant: 0x80,
        safe_action: &[-2.0],
        extensions: &[],
    }
}

fn tiny_int8() -> Vec<u8> {
    let layers = [
        LayerSpec {
            weights: WeightsSpec::Int8 {
                q: &Q0,
                scales: &S0,
            },
            bias: &B0,
        },
        LayerSpec {
            weights: WeightsSpec::Int8 {
                q: &Q1,
                scales: &S1,
            },
            bias: &B1,
        },
    ];
    let mut buf = [0u8; 256];
    let n = format::encode(&tiny_spec(&layers), &mut buf).unwrap();
    buf[..n].to_vec()
}

fn tiny_f32() -> Vec<u8> {
    let layers = [
        LayerSpec {
            weights: WeightsSpec::F32(&W0),
            bias: &B0,
        },
        LayerSpec {
            weights: WeightsSpec::F32(&W1),
            bias: &B1,
        },
    ];
    let mut buf = [0u8; 256];
    let n = format::encode(&tiny_spec(&layers), &mut buf).unwrap();
    buf[..n].to_vec()
}

/// The payload fields both tiny blobs share, up to and including the layer
/// count. `encoding` is 0 (f32) or 1 (int8).
#[rustfmt::skip]
fn tiny_payload_head(encoding: u8) -> Vec<u8> {
    vec![
        0x02,                               // obs_dim      varint u16 = 2
        0x01,                               // act_dim      varint u16 = 1
        0x01, 0x02,                         // hidden       seq: count 1, [varint 2]
        0x00,                               // activation   u8 = 0 (tanh)
        encoding,                           // encoding     u8
        0x08,                               // obs_mean     byte string, 8 bytes:
        0x00, 0x00, 0x00, 0x3F,             //                0.5
        0x00, 0x00, 0x80, 0xBF,             //               −1.0
        0x08,                               // obs_inv_std  8 bytes:
        0x00, 0x00, 0x00, 0x40,             //                2.0
        0x00, 0x00, 0x80, 0x3E,             //                0.25
        0x00, 0x00, 0xA0, 0x40,             // obs_clip     f32 = 5.0 (no length: a plain f32)
        0x04, 0x00, 0x00, 0x00, 0xC0,       // action_low   4 bytes: −2.0
        0x04, 0x00, 0x00, 0x00, 0x40,       // action_high  4 bytes:  2.0
        0x04, 0x00, 0x00, 0x00, 0xBF,       // log_std      4 bytes: −0.5
        0x02,                               // layers       seq: count 2
    ]
}

/// CRC-32C of each payload (the policy id) and of header + payload (the
/// trailer). Computed with a bitwise Castagnoli CRC (reflected polynomial
/// 0x82F63B78, init and xor-out 0xFFFFFFFF, check value 0xE3069283), once in
/// Python from the bytes below and again here by `crc32c_ref`:
///
/// ```python
/// def crc32c(b):
///     c = 0xFFFFFFFF
///     for x in b:
///         c ^= x
///         for _ in range(8):
///             c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
///     return c ^ 0xFFFFFFFF
/// ```
const V1_INT8_ID: u32 = 0xC3D4_4C01;
const V1_INT8_CRC: u32 = 0x300C_8254;
const V1_F32_ID: u32 = 0x6752_6C2D;
const V1_F32_CRC: u32 = 0xEB12_CFB0;
/// The same, for the v2 blobs (payload = v1 payload + the v2 tail).
const INT8_ID: u32 = 0xE135_4828;
const INT8_CRC: u32 = 0xD363_04A6;
const F32_ID: u32 = 0xB235_BD69;
const F32_CRC: u32 = 0x6763_FD17;

/// The fields format v2 appends to the tiny payloads.
#[rustfmt::skip]
const V2_TAIL: [u8; 7] = [
    0x80,                               // plant        u8 = 0x80
    0x04, 0x00, 0x00, 0x00, 0xC0,       // safe_action  4 bytes: −2.0
    0x00,                               // extensions   seq: count 0
];

/// A v1 blob turned into the v2 blob of the same policy: version 2, the
/// v2 tail after the layers, new id, length and CRC.
#[rustfmt::skip]
fn to_v2(v1: &[u8], id: u32, crc: u32) -> Vec<u8> {
    let mut payload = payload_of(v1).to_vec();
    payload.extend_from_slice(&V2_TAIL);
    let mut blob = vec![
        0x54, 0x50, 0x50, 0x4F,             // magic    "TPPO"
        0x02, 0x00,                         // version  u16 LE = 2
    ];
    blob.extend_from_slice(&id.to_le_bytes());
    blob.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    blob.extend_from_slice(&payload);
    blob.extend_from_slice(&crc.to_le_bytes());
    blob
}

/// The v2 int8 blob, 105 bytes (`docs/FORMAT.md`, "Example").
fn golden_int8() -> Vec<u8> {
    let b = to_v2(&golden_v1_int8(), INT8_ID, INT8_CRC);
    assert_eq!(b.len(), 105);
    b
}

/// The v2 f32 blob, 111 bytes.
fn golden_f32() -> Vec<u8> {
    let b = to_v2(&golden_v1_f32(), F32_ID, F32_CRC);
    assert_eq!(b.len(), 111);
    b
}

#[rustfmt::skip]
fn golden_v1_int8() -> Vec<u8> {
    let mut payload = tiny_payload_head(0x01);
    payload.extend_from_slice(&[
        // layers[0]
        0x04, 0x7F, 0xC0, 0x01, 0x81,       // weights  4 bytes: i8 127, −64, 1, −127 (row-major)
        0x08,                               // scales   8 bytes:
        0x00, 0x00, 0x00, 0x3F,             //            0.5   (row 0)
        0x00, 0x00, 0x80, 0x3E,             //            0.25  (row 1)
        0x08,                               // bias     8 bytes:
        0x00, 0x00, 0x00, 0x00,             //            0.0
        0x00, 0x00, 0x00, 0xBE,             //           −0.125
        // layers[1]
        0x02, 0x64, 0x9C,                   // weights  2 bytes: i8 100, −100
        0x04, 0x00, 0x00, 0x00, 0x3C,       // scales   4 bytes: 2⁻⁷
        0x04, 0x00, 0x00, 0x80, 0x3E,       // bias     4 bytes: 0.25
    ]);
    assert_eq!(payload.len(), 80);
    let mut blob = vec![
        0x54, 0x50, 0x50, 0x4F,             // magic    "TPPO"
        0x01, 0x00,                         // version  u16 LE = 1
    ];
    blob.extend_from_slice(&V1_INT8_ID.to_le_bytes()); // policy id, u32 LE
    blob.extend_from_slice(&[0x50, 0x00, 0x00, 0x00]); // payload length u32 LE = 80
    blob.extend_from_slice(&payload);
    blob.extend_from_slice(&V1_INT8_CRC.to_le_bytes()); // CRC-32C of bytes 0..94
    assert_eq!(blob.len(), 98);
    blob
}

#[rustfmt::skip]
fn golden_v1_f32() -> Vec<u8> {
    let mut payload = tiny_payload_head(0x00);
    payload.extend_from_slice(&[
        // layers[0]
        0x10,                               // weights  16 bytes, row-major:
        0x00, 0x00, 0x80, 0x3F,             //            w[0][0] =  1.0
        0x00, 0x00, 0x00, 0xBF,             //            w[0][1] = −0.5
        0x00, 0x00, 0x80, 0x3E,             //            w[1][0] =  0.25
        0x00, 0x00, 0x00, 0x40,             //            w[1][1] =  2.0
        0x00,                               // scales   empty for f32
        0x08,                               // bias     8 bytes:
        0x00, 0x00, 0x00, 0x00,             //            0.0
        0x00, 0x00, 0x00, 0xBE,             //           −0.125
        // layers[1]
        0x08,                               // weights  8 bytes:
        0x00, 0x00, 0x00, 0x3F,             //            0.5
        0x00, 0x00, 0xC0, 0xBF,             //           −1.5
        0x00,                               // scales   empty
        0x04, 0x00, 0x00, 0x80, 0x3E,       // bias     4 bytes: 0.25
    ]);
    assert_eq!(payload.len(), 86);
    let mut blob = vec![0x54, 0x50, 0x50, 0x4F, 0x01, 0x00];
    blob.extend_from_slice(&V1_F32_ID.to_le_bytes());
    blob.extend_from_slice(&[0x56, 0x00, 0x00, 0x00]); // 86
    blob.extend_from_slice(&payload);
    blob.extend_from_slice(&V1_F32_CRC.to_le_bytes());
    assert_eq!(blob.len(), 104);
    blob
}

#[test]
fn fuzz_seeds_are_the_golden_blobs() {
    // fuzz/seeds/*/seed-tiny-*: the fuzzers start from these valid inputs.
    let blob_int8 = include_bytes!("../../fuzz/seeds/blob/seed-tiny-int8");
    let blob_f32 = include_bytes!("../../fuzz/seeds/blob/seed-tiny-f32");
    let payload_int8 = include_bytes!("../../fuzz/seeds/payload/seed-tiny-int8");
    let payload_f32 = include_bytes!("../../fuzz/seeds/payload/seed-tiny-f32");
    assert_eq!(&blob_int8[..], &golden_v1_int8()[..]);
    assert_eq!(&blob_f32[..], &golden_v1_f32()[..]);
    // The payload target's first byte picks the format version (0: v1).
    assert_eq!(
        &payload_int8[..],
        [&[0u8][..], payload_of(&golden_v1_int8())].concat()
    );
    assert_eq!(
        &payload_f32[..],
        [&[0u8][..], payload_of(&golden_v1_f32())].concat()
    );
    let p2_int8 = include_bytes!("../../fuzz/seeds/payload/seed-tiny-v2-int8");
    assert_eq!(
        &p2_int8[..],
        [&[1u8][..], payload_of(&golden_int8())].concat()
    );
    let v2_int8 = include_bytes!("../../fuzz/seeds/blob/seed-tiny-v2-int8");
    let v2_f32 = include_bytes!("../../fuzz/seeds/blob/seed-tiny-v2-f32");
    assert_eq!(&v2_int8[..], &golden_int8()[..]);
    assert_eq!(&v2_f32[..], &golden_f32()[..]);
    // Seeds that reach the extension records' parsers: a pendulum policy
    // with a 2-action history and realism, both encodings.
    for bytes in [
        &include_bytes!("../../fuzz/seeds/blob/seed-history-realism-int8")[..],
        &include_bytes!("../../fuzz/seeds/blob/seed-history-realism-f32")[..],
    ] {
        let b = tinyppo_runtime::Blob::parse(bytes).unwrap();
        assert_eq!(b.history().map(|h| h.len), Some(2));
        assert!(b.realism().is_some());
    }
    // And one with all four records: history, safety, realism, self-test.
    let b = tinyppo_runtime::Blob::parse(include_bytes!(
        "../../fuzz/seeds/blob/seed-history-safety-realism-self-test-int8"
    ))
    .unwrap();
    let tags: Vec<u8> = b.extensions().map(|e| e.tag).collect();
    assert_eq!(tags, [0x00, 0x01, 0x80, 0x81]);
    assert_eq!(b.self_test().map(|v| v.count), Some(5));
    let p = include_bytes!("../../fuzz/seeds/payload/seed-history-safety-realism-self-test-int8");
    assert_eq!(
        &p[1..],
        payload_of(
            &include_bytes!("../../fuzz/seeds/blob/seed-history-safety-realism-self-test-int8")[..]
        )
    );
}

#[test]
fn crc32c_reference_check_value() {
    // The catalogue check value of CRC-32/ISCSI.
    assert_eq!(crc32c_ref(b"123456789"), 0xE306_9283);
    assert_eq!(format::CRC32C.checksum(b"123456789"), 0xE306_9283);
}

#[test]
fn golden_ids_and_crcs_are_crc32c() {
    for (golden, id, crc) in [
        (golden_int8(), INT8_ID, INT8_CRC),
        (golden_f32(), F32_ID, F32_CRC),
        (golden_v1_int8(), V1_INT8_ID, V1_INT8_CRC),
        (golden_v1_f32(), V1_F32_ID, V1_F32_CRC),
    ] {
        let body_end = golden.len() - 4;
        assert_eq!(
            crc32c_ref(&golden[14..body_end]),
            id,
            "policy id = CRC-32C(payload)"
        );
        assert_eq!(
            crc32c_ref(&golden[..body_end]),
            crc,
            "trailer = CRC-32C(header + payload)"
        );
    }
}

#[test]
fn golden_int8_blob_bytes() {
    let enc = tiny_int8();
    assert_eq!(
        enc,
        golden_int8(),
        "\nencoded {:02X?}\n golden {:02X?}",
        enc,
        golden_int8()
    );
    let blob = Blob::parse(&enc).unwrap();
    assert_eq!(blob.policy_id, INT8_ID);
    assert_eq!(blob.encoding, Encoding::Int8);
    assert_eq!((blob.version, blob.plant_code()), (2, Some(0x80)));
    assert_eq!(blob.safe_action().collect::<Vec<_>>(), [-2.0]);
    let p = Policy::<2, 1, 2>::from_bytes(&enc).unwrap();
    assert_eq!(
        (p.id(), p.plant_code(), p.safe_action()),
        (INT8_ID, Some(0x80), [-2.0])
    );
}

/// Blobs exported before format v2 still load: no plant, the midpoint as
/// the safe action, and exactly the same means as the v2 blob of the same
/// weights (the v2 fields do not change inference).
#[test]
fn v1_blobs_still_load_and_compute_the_same() {
    for (v1, v2) in [
        (golden_v1_int8(), golden_int8()),
        (golden_v1_f32(), golden_f32()),
    ] {
        let b = Blob::parse(&v1).unwrap();
        assert_eq!((b.version, b.plant_code(), b.plant), (1, None, 0xFF));
        assert_eq!(b.safe_action().collect::<Vec<_>>(), [0.0]);
        assert_eq!(b.extensions().count(), 0);
        let (p1, p2) = (
            Policy::<2, 1, 2>::from_bytes(&v1).unwrap(),
            Policy::<2, 1, 2>::from_bytes(&v2).unwrap(),
        );
        assert_eq!(p1.safe_action(), [0.0]);
        assert_eq!(p1.plant_code(), None);
        for obs in [[1.0f32, 3.0], [-0.3, 0.7], [100.0, -50.0]] {
            assert_eq!(p1.mean(&obs).unwrap(), p2.mean(&obs).unwrap());
        }
    }
}

#[test]
fn golden_f32_blob_bytes() {
    let enc = tiny_f32();
    assert_eq!(
        enc,
        golden_f32(),
        "\nencoded {:02X?}\n golden {:02X?}",
        enc,
        golden_f32()
    );
    let blob = Blob::parse(&enc).unwrap();
    assert_eq!(blob.policy_id, F32_ID);
    assert_eq!(blob.encoding, Encoding::F32);
}

#[test]
fn golden_blobs_compute_the_hand_derived_means() {
    // obs [1, 3] → x̂ = [(1 − 0.5)·2, (3 + 1)·0.25] = [1, 1].
    let obs = [1.0f32, 3.0];
    // int8: input scale 1/127, p = [127, 127];
    //   row 0: (127·127 − 64·127)·0.5/127 + 0     =  31.5    → tanh = 1 (in f32)
    //   row 1: (1·127 − 127·127)·0.25/127 − 0.125 = −31.625  → tanh = −1
    //   out:   p = [127, −127]; (100·127 + 100·127)·2⁻⁷/127 + 0.25 = 1.5625 + 0.25 = 1.8125
    let (int8, f32) = (golden_v1_int8(), golden_v1_f32());
    let p = Policy::<2, 1, 2>::from_bytes(&int8).unwrap();
    assert_eq!(p.normalize(&obs).unwrap(), [1.0, 1.0]);
    assert!((p.mean(&obs).unwrap()[0] - 1.8125).abs() < 1e-6);
    // f32: h = tanh([1 − 0.5 + 0, 0.25 + 2 − 0.125]); μ = 0.5·h0 − 1.5·h1 + 0.25.
    let want = 0.5 * 0.5f64.tanh() - 1.5 * 2.125f64.tanh() + 0.25;
    let p = Policy::<2, 1, 2>::from_bytes(&f32).unwrap();
    assert!((p.mean(&obs).unwrap()[0] as f64 - want).abs() < 1e-6);
    assert_eq!(p.entropy(), -0.5 + 0.5 + 0.918_938_5);
}

#[test]
fn varints_of_128_and_more_take_two_bytes() {
    // obs 1, hidden [200], act 1, int8: hidden[0] = 200 is the varint
    // C8 01, and layer 0's 200 weight bytes have the length varint C8 01.
    let net = Net::random(
        &mut TestRng::new(3),
        1,
        1,
        &[200],
        Activation::Relu,
        (-1.0, 0.0),
    );
    let blob = net.encode_int8();
    let p = payload_of(&blob);
    assert_eq!(&p[..5], &[0x01, 0x01, 0x01, 0xC8, 0x01]);
    // obs_mean, obs_inv_std (1+4 each), obs_clip 4, low/high/log_std (1+4 each).
    let layers_at = 7 + 5 + 5 + 4 + 5 + 5 + 5;
    assert_eq!(&p[layers_at..layers_at + 3], &[0x02, 0xC8, 0x01]);
    assert_eq!(blob, net.raw_int8().blob());
}

#[test]
fn encoder_matches_the_independent_writer() {
    let mut rng = TestRng::new(11);
    for (i, hidden) in [&[4][..], &[8, 3], &[130, 2, 5]].iter().enumerate() {
        for act in [Activation::Tanh, Activation::Relu] {
            let net = Net::random(&mut rng, 3 + i, 1 + i, hidden, act, (-2.0, 1.0));
            let (f, q) = (net.encode_f32(), net.encode_int8());
            assert_eq!(f, net.raw_f32().blob());
            assert_eq!(q, net.raw_int8().blob());
            for b in [&f, &q] {
                assert_eq!(Blob::parse(b).unwrap().policy_id, crc32c_ref(payload_of(b)));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Framing errors.

#[test]
fn every_truncation_is_truncated() {
    for blob in [
        golden_int8(),
        golden_f32(),
        golden_v1_int8(),
        golden_v1_f32(),
    ] {
        for n in 0..blob.len() {
            let err = Blob::parse(&blob[..n]).unwrap_err();
            let needed = if n < 14 { 18 } else { blob.len() };
            assert_eq!(
                err,
                FormatError::Truncated { needed, found: n },
                "prefix of {n} bytes"
            );
        }
    }
}

/// The error a single flipped bit at `offset` (bit `bit`) of a valid blob
/// of payload length `n` must produce, from the order of checks.
fn expected_flip_error(blob: &[u8], offset: usize, bit: u32) -> FormatError {
    let n = blob.len() - 18;
    match offset {
        0..=3 => FormatError::BadMagic,
        4..=5 => {
            let v = u16::from_le_bytes([blob[4], blob[5]]) ^ (1 << (bit + 8 * (offset as u32 - 4)));
            FormatError::UnsupportedVersion { found: v }
        }
        10..=13 => {
            let len = (n as u32) ^ (1 << (bit + 8 * (offset as u32 - 10)));
            let expected = 18usize.saturating_add(len as usize);
            if expected > blob.len() {
                FormatError::Truncated {
                    needed: expected,
                    found: blob.len(),
                }
            } else {
                FormatError::TrailingBytes {
                    expected,
                    found: blob.len(),
                }
            }
        }
        // Policy id, payload, CRC: the trailer CRC no longer matches (a CRC
        // detects every single-bit error), and CRC is checked before the id.
        _ => {
            let mut flipped = blob.to_vec();
            flipped[offset] ^= 1 << bit;
            let body_end = 14 + n;
            FormatError::BadChecksum {
                stored: u32::from_le_bytes(flipped[body_end..].try_into().unwrap()),
                computed: crc32c_ref(&flipped[..body_end]),
            }
        }
    }
}

#[test]
fn every_single_bit_flip_is_rejected_with_the_error_of_its_offset() {
    let mut rng = TestRng::new(5);
    let net = Net::random(&mut rng, 3, 2, &[5, 4], Activation::Tanh, (-1.0, 0.0));
    for blob in [
        golden_int8(),
        golden_f32(),
        golden_v1_int8(),
        golden_v1_f32(),
        net.encode_int8(),
    ] {
        for offset in 0..blob.len() {
            for bit in 0..8 {
                let mut b = blob.clone();
                b[offset] ^= 1 << bit;
                let err = Blob::parse(&b).unwrap_err();
                assert_eq!(
                    err,
                    expected_flip_error(&blob, offset, bit),
                    "byte {offset} bit {bit}"
                );
                // The typed loader reports the same.
                assert_eq!(Policy::<2, 1, 2>::from_bytes(&b).unwrap_err(), err);
            }
        }
    }
}

#[test]
fn wrong_policy_id_with_valid_crc_is_policy_id_mismatch() {
    let blob = golden_int8();
    let payload = payload_of(&blob);
    let bad = frame_with(payload, 2, INT8_ID ^ 1);
    assert_eq!(
        Blob::parse(&bad).unwrap_err(),
        FormatError::PolicyIdMismatch {
            stored: INT8_ID ^ 1,
            computed: INT8_ID
        }
    );
}

#[test]
fn unknown_versions_are_unsupported() {
    let blob = golden_int8();
    for version in [0u16, 3, 0x0100, u16::MAX] {
        let bad = frame_with(payload_of(&blob), version, INT8_ID);
        assert_eq!(
            Blob::parse(&bad).unwrap_err(),
            FormatError::UnsupportedVersion { found: version }
        );
    }
}

#[test]
fn bad_magic_and_trailing_bytes() {
    let mut b = golden_int8();
    b[0] = b't';
    assert_eq!(Blob::parse(&b).unwrap_err(), FormatError::BadMagic);
    // Wrong magic wins over a short header, once 4 bytes are there.
    assert_eq!(Blob::parse(b"TPPX").unwrap_err(), FormatError::BadMagic);
    assert_eq!(
        Blob::parse(b"TPP").unwrap_err(),
        FormatError::Truncated {
            needed: 18,
            found: 3
        }
    );
    let mut b = golden_int8();
    b.push(0);
    assert_eq!(
        Blob::parse(&b).unwrap_err(),
        FormatError::TrailingBytes {
            expected: 105,
            found: 106
        }
    );
    // An announced length near u32::MAX is a truncation, not an overflow.
    let mut b = golden_int8();
    b[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Blob::parse(&b).unwrap_err(),
        FormatError::Truncated {
            needed: 18 + u32::MAX as usize,
            found: 105
        }
    );
}

// ---------------------------------------------------------------------------
// Payload errors: blobs with a valid id and CRC, so payload validation runs.

/// `payload` framed as a v2 blob (the test nets' payloads are v2).
fn frame_v2(payload: &[u8]) -> Vec<u8> {
    crate::util::frame_v(payload, 2)
}

/// obs 3, act 2, hidden [4, 5], tanh: the base of the payload-error cases.
fn base() -> Net {
    Net::random(
        &mut TestRng::new(17),
        3,
        2,
        &[4, 5],
        Activation::Tanh,
        (-1.0, 0.5),
    )
}

/// The v2 fields of a test payload.
fn tail(r: &mut RawPayload) -> &mut crate::util::RawTail {
    r.v2.as_mut().expect("a v2 payload")
}

fn parse_err(raw: &RawPayload) -> FormatError {
    Blob::parse(&raw.blob()).unwrap_err()
}

fn set_f32(bytes: &mut [u8], index: usize, v: f32) {
    bytes[4 * index..4 * index + 4].copy_from_slice(&v.to_le_bytes());
}

/// Every rejection class, each with the error variant it must produce and
/// a word its `Display` must contain (the field's name).
fn payload_cases() -> Vec<(&'static str, RawPayload, FormatError, &'static str)> {
    use FormatError::*;
    let net = base();
    let f = net.raw_f32();
    let q = net.raw_int8();
    let mut cases = Vec::new();
    let mut case = |name: &'static str,
                    mut raw: RawPayload,
                    edit: &dyn Fn(&mut RawPayload),
                    err: FormatError,
                    word: &'static str| {
        edit(&mut raw);
        cases.push((name, raw, err, word));
    };
    case(
        "obs_dim 0",
        f.clone(),
        &|r| r.obs_dim = 0,
        BadWidth {
            field: Field::ObsDim,
            found: 0,
            max: 256,
        },
        "obs_dim",
    );
    case(
        "act_dim 257",
        f.clone(),
        &|r| r.act_dim = 257,
        BadWidth {
            field: Field::ActDim,
            found: 257,
            max: 256,
        },
        "act_dim",
    );
    case(
        "hidden width 0",
        f.clone(),
        &|r| r.hidden[1] = 0,
        BadWidth {
            field: Field::HiddenWidth(1),
            found: 0,
            max: 256,
        },
        "hidden[1]",
    );
    case(
        "hidden width 300",
        f.clone(),
        &|r| r.hidden[0] = 300,
        BadWidth {
            field: Field::HiddenWidth(0),
            found: 300,
            max: 256,
        },
        "hidden[0]",
    );
    case(
        "no hidden layer",
        f.clone(),
        &|r| {
            r.hidden.clear();
            r.layers.truncate(1)
        },
        BadLayerCount { found: 0 },
        "layers",
    );
    case(
        "4 hidden layers",
        f.clone(),
        &|r| {
            // A well-formed 3-4-5-5-5-2 network: only the count is wrong.
            r.hidden = vec![4, 5, 5, 5];
            let l2 = crate::util::RawLayer {
                weights: f32_bytes(&[0.1; 25]),
                scales: vec![],
                bias: f32_bytes(&[0.0; 5]),
            };
            let out = crate::util::RawLayer {
                weights: f32_bytes(&[0.1; 10]),
                scales: vec![],
                bias: f32_bytes(&[0.0; 2]),
            };
            r.layers = vec![
                r.layers[0].clone(),
                r.layers[1].clone(),
                l2.clone(),
                l2,
                out,
            ];
        },
        BadLayerCount { found: 4 },
        "layers",
    );
    case(
        "6 hidden layers",
        f.clone(),
        &|r| r.hidden = vec![4; 6],
        BadLayerCount { found: 6 },
        "layers",
    );
    case(
        "missing output layer",
        f.clone(),
        &|r| {
            r.layers.pop();
        },
        BadLayerCount { found: 2 },
        "layers",
    );
    case(
        "activation code 2",
        f.clone(),
        &|r| r.activation = 2,
        UnknownActivation { found: 2 },
        "activation",
    );
    case(
        "activation code 255",
        f.clone(),
        &|r| r.activation = 255,
        UnknownActivation { found: 255 },
        "activation",
    );
    case(
        "encoding code 3",
        f.clone(),
        &|r| r.encoding = 3,
        UnknownEncoding { found: 3 },
        "encoding",
    );
    case(
        "obs_mean short",
        f.clone(),
        &|r| {
            r.obs_mean.truncate(8);
        },
        LengthMismatch {
            field: Field::ObsMean,
            expected: 12,
            found: 8,
        },
        "obs_mean",
    );
    case(
        "obs_mean NaN",
        f.clone(),
        &|r| set_f32(&mut r.obs_mean, 2, f32::NAN),
        NonFinite {
            field: Field::ObsMean,
            index: 2,
        },
        "obs_mean[2]",
    );
    case(
        "obs_inv_std 0",
        f.clone(),
        &|r| set_f32(&mut r.obs_inv_std, 1, 0.0),
        BadScale {
            field: Field::ObsInvStd,
            index: 1,
        },
        "obs_inv_std[1]",
    );
    case(
        "obs_inv_std −1",
        f.clone(),
        &|r| set_f32(&mut r.obs_inv_std, 0, -1.0),
        BadScale {
            field: Field::ObsInvStd,
            index: 0,
        },
        "obs_inv_std[0]",
    );
    case(
        "obs_clip 0",
        f.clone(),
        &|r| r.obs_clip = 0.0,
        BadScale {
            field: Field::ObsClip,
            index: 0,
        },
        "obs_clip",
    );
    case(
        "obs_clip inf",
        f.clone(),
        &|r| r.obs_clip = f32::INFINITY,
        NonFinite {
            field: Field::ObsClip,
            index: 0,
        },
        "obs_clip",
    );
    case(
        "obs_clip 2e5",
        f.clone(),
        &|r| r.obs_clip = 2e5,
        OutOfRange {
            field: Field::ObsClip,
            index: 0,
        },
        "obs_clip",
    );
    case(
        "low == high",
        f.clone(),
        &|r| {
            let hi = r.action_high.clone();
            r.action_low[4..8].copy_from_slice(&hi[4..8])
        },
        BadBounds { dim: 1 },
        "action_low[1]",
    );
    case(
        "low > high",
        f.clone(),
        &|r| {
            set_f32(&mut r.action_low, 0, 3.5);
            set_f32(&mut r.action_high, 0, -3.5)
        },
        BadBounds { dim: 0 },
        "action_low[0]",
    );
    case(
        "action_high −inf",
        f.clone(),
        &|r| set_f32(&mut r.action_high, 1, f32::NEG_INFINITY),
        NonFinite {
            field: Field::ActionHigh,
            index: 1,
        },
        "action_high[1]",
    );
    case(
        "log_std 10.5",
        f.clone(),
        &|r| set_f32(&mut r.log_std, 1, 10.5),
        OutOfRange {
            field: Field::LogStd,
            index: 1,
        },
        "log_std[1]",
    );
    case(
        "log_std −20.5",
        f.clone(),
        &|r| set_f32(&mut r.log_std, 0, -20.5),
        OutOfRange {
            field: Field::LogStd,
            index: 0,
        },
        "log_std[0]",
    );
    case(
        "log_std NaN",
        f.clone(),
        &|r| set_f32(&mut r.log_std, 0, f32::NAN),
        NonFinite {
            field: Field::LogStd,
            index: 0,
        },
        "log_std[0]",
    );
    case(
        "NaN weight",
        f.clone(),
        &|r| set_f32(&mut r.layers[1].weights, 7, f32::NAN),
        NonFinite {
            field: Field::Weights(1),
            index: 7,
        },
        "layers[1].weights[7]",
    );
    case(
        "weight 1e5·1.001",
        f.clone(),
        &|r| set_f32(&mut r.layers[2].weights, 3, -MAX_ABS_VALUE * 1.001),
        OutOfRange {
            field: Field::Weights(2),
            index: 3,
        },
        "layers[2].weights[3]",
    );
    case(
        "inf bias",
        f.clone(),
        &|r| set_f32(&mut r.layers[0].bias, 3, f32::INFINITY),
        NonFinite {
            field: Field::Bias(0),
            index: 3,
        },
        "layers[0].bias[3]",
    );
    case(
        "−inf bias",
        f.clone(),
        &|r| set_f32(&mut r.layers[2].bias, 1, f32::NEG_INFINITY),
        NonFinite {
            field: Field::Bias(2),
            index: 1,
        },
        "layers[2].bias[1]",
    );
    case(
        "bias length",
        f.clone(),
        &|r| {
            r.layers[1].bias.extend([0; 4]);
        },
        LengthMismatch {
            field: Field::Bias(1),
            expected: 20,
            found: 24,
        },
        "layers[1].bias",
    );
    case(
        "weights length",
        f.clone(),
        &|r| {
            r.layers[0].weights.truncate(44);
        },
        LengthMismatch {
            field: Field::Weights(0),
            expected: 48,
            found: 44,
        },
        "layers[0].weights",
    );
    case(
        "f32 layer with scales",
        f.clone(),
        &|r| r.layers[1].scales = f32_bytes(&[1.0]),
        LengthMismatch {
            field: Field::Scales(1),
            expected: 0,
            found: 4,
        },
        "layers[1].scales",
    );
    case(
        "f32 weights as int8",
        f.clone(),
        &|r| r.encoding = 1,
        LengthMismatch {
            field: Field::Weights(0),
            expected: 12,
            found: 48,
        },
        "layers[0].weights",
    );
    case(
        "int8 scale 0",
        q.clone(),
        &|r| set_f32(&mut r.layers[1].scales, 2, 0.0),
        BadScale {
            field: Field::Scales(1),
            index: 2,
        },
        "layers[1].scales[2]",
    );
    case(
        "int8 scale −0",
        q.clone(),
        &|r| set_f32(&mut r.layers[0].scales, 0, -0.0),
        BadScale {
            field: Field::Scales(0),
            index: 0,
        },
        "layers[0].scales[0]",
    );
    case(
        "int8 scale −0.5",
        q.clone(),
        &|r| set_f32(&mut r.layers[2].scales, 1, -0.5),
        BadScale {
            field: Field::Scales(2),
            index: 1,
        },
        "layers[2].scales[1]",
    );
    case(
        "int8 scale NaN",
        q.clone(),
        &|r| set_f32(&mut r.layers[0].scales, 3, f32::NAN),
        NonFinite {
            field: Field::Scales(0),
            index: 3,
        },
        "layers[0].scales[3]",
    );
    case(
        "int8 scale too large",
        q.clone(),
        &|r| set_f32(&mut r.layers[0].scales, 1, MAX_INT8_SCALE * 1.001),
        OutOfRange {
            field: Field::Scales(0),
            index: 1,
        },
        "layers[0].scales[1]",
    );
    case(
        "int8 weight −128",
        q.clone(),
        &|r| r.layers[1].weights[9] = 0x80,
        OutOfRange {
            field: Field::Weights(1),
            index: 9,
        },
        "layers[1].weights[9]",
    );
    case(
        "int8 scales missing",
        q.clone(),
        &|r| r.layers[2].scales.clear(),
        LengthMismatch {
            field: Field::Scales(2),
            expected: 8,
            found: 0,
        },
        "layers[2].scales",
    );
    case(
        "int8 weights as f32",
        q.clone(),
        &|r| r.encoding = 0,
        LengthMismatch {
            field: Field::Weights(0),
            expected: 48,
            found: 12,
        },
        "layers[0].weights",
    );
    // Format v2: the safe action and the extension records.
    case(
        "safe action too short",
        q.clone(),
        &|r| tail(r).safe_action.truncate(4),
        LengthMismatch {
            field: Field::SafeAction,
            expected: 8,
            found: 4,
        },
        "safe_action",
    );
    case(
        "safe action NaN",
        q.clone(),
        &|r| set_f32(&mut tail(r).safe_action, 1, f32::NAN),
        NonFinite {
            field: Field::SafeAction,
            index: 1,
        },
        "safe_action[1]",
    );
    case(
        "safe action above the upper bound",
        q.clone(),
        &|r| {
            let hi = f32::from_le_bytes(r.action_high[4..8].try_into().unwrap());
            set_f32(&mut tail(r).safe_action, 1, hi + 0.25);
        },
        OutOfRange {
            field: Field::SafeAction,
            index: 1,
        },
        "safe_action[1]",
    );
    case(
        "safe action below the lower bound",
        q.clone(),
        &|r| {
            let lo = f32::from_le_bytes(r.action_low[0..4].try_into().unwrap());
            set_f32(&mut tail(r).safe_action, 0, lo - 0.25);
        },
        OutOfRange {
            field: Field::SafeAction,
            index: 0,
        },
        "safe_action[0]",
    );
    case(
        "extension tags out of order",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x82, vec![1]), (0x7F, vec![])],
        ExtensionOrder { tag: 0x7F },
        "0x7f",
    );
    case(
        "an unknown required extension",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x05, vec![1, 2])],
        UnknownExtension { tag: 0x05 },
        "0x05",
    );
    case(
        "a repeated extension tag",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x90, vec![]), (0x90, vec![])],
        ExtensionOrder { tag: 0x90 },
        "0x90",
    );
    case(
        "nine extension records",
        q.clone(),
        &|r| tail(r).extensions = (0x82..0x8B).map(|t| (t, vec![])).collect(),
        TooManyExtensions { found: 9 },
        "9 extension",
    );
    // The realism record (optional tag 0x80) is checked by a runtime that
    // knows it: against the blob's dimensions (3 observations, 2 actions).
    case(
        "a malformed realism record",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x80, vec![1])],
        Realism(RealismError::Malformed),
        "realism",
    );
    case(
        "a realism record for other dimensions",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x80, realism_body(&[0.1, 0.1], &[0.0, 0.0], 1))],
        Realism(RealismError::Length {
            field: RealismField::ObsNoise,
            expected: 3,
            found: 2,
        }),
        "obs_noise has 2 values",
    );
    case(
        "a negative noise in the realism record",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x80, realism_body(&[0.0, -0.1, 0.0], &[0.0, 0.0], 1))],
        Realism(RealismError::Invalid {
            field: RealismField::ObsNoise,
            index: 1,
        }),
        "obs_noise[1]",
    );
    case(
        "a realism delay of 9 ticks",
        q.clone(),
        &|r| tail(r).extensions = vec![(0x80, realism_body(&[0.0; 3], &[0.0, 0.0], 9))],
        Realism(RealismError::DelayTooLong {
            field: RealismField::ObsDelay,
            found: 9,
        }),
        "0 to 8",
    );
    cases
}

/// A realism record body: `noise` per observation, `rate` per action, an
/// observation delay.
fn realism_body(noise: &[f32], rate: &[f32], delay: u8) -> Vec<u8> {
    let zeros_o = vec![0.0; noise.len()];
    let zeros_a = vec![0.0; rate.len()];
    let spec = RealismSpec {
        obs_noise: noise,
        obs_resolution: &zeros_o,
        obs_delay: delay,
        action_delay: 0,
        actuator_tau: 0.0,
        rate_limit: rate,
        deadzone: &zeros_a,
        smoothness: 0.0,
    };
    let mut buf = [0u8; 256];
    let n = tinyppo_runtime::realism::encode_body(&spec, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// A valid realism record loads and reads back.
#[test]
fn v2_realism_record_loads() {
    let mut r = base().raw_int8();
    let body = realism_body(&[0.01, 0.0, 0.5], &[3.0, 0.0], 2);
    r.v2.as_mut().unwrap().extensions = vec![(0x80, body.clone())];
    let blob = r.blob();
    let b = Blob::parse(&blob).unwrap();
    let v = b.realism().unwrap();
    let got = tinyppo_runtime::realism::Realism::<3, 2>::from_view(&v).unwrap();
    assert_eq!(got.obs_noise, [0.01, 0.0, 0.5]);
    assert_eq!(got.rate_limit, [3.0, 0.0]);
    assert_eq!(got.obs_delay, 2);
    assert!(Policy::<3, 2, 8>::from_bytes(&blob).is_ok());
    // Without the record: none.
    assert!(Blob::parse(&base().raw_int8().blob())
        .unwrap()
        .realism()
        .is_none());
}

/// Optional extension records (tags 0x80–0xFF) are skipped by a reader
/// that does not know them, and kept for one that does; the plant code may
/// be any byte (a newer tinyppo may have more built-in plants).
#[test]
fn v2_optional_extensions_are_kept_and_any_plant_code_loads() {
    let mut r = base().raw_int8();
    let exts: Vec<(u8, Vec<u8>)> =
        vec![(0x82, vec![]), (0x9A, vec![1, 2, 3]), (0xFF, vec![7; 300])];
    for plant in [0u8, 3, 4, 0x7F, 0x80, 0xFE, 0xFF] {
        let t = r.v2.as_mut().unwrap();
        t.plant = plant;
        t.extensions = exts.clone();
        let blob = r.blob();
        let b = Blob::parse(&blob).unwrap();
        assert_eq!(b.plant, plant);
        assert_eq!(b.plant_code(), (plant != 0xFF).then_some(plant));
        let got: Vec<(u8, Vec<u8>)> = b.extensions().map(|e| (e.tag, e.body.to_vec())).collect();
        assert_eq!(got, exts);
        assert!(Policy::<3, 2, 8>::from_bytes(&blob).is_ok());
    }
    // The encoder writes them the same way.
    let net = base();
    let body = [1u8, 2, 3];
    let ext = [tinyppo_runtime::Extension {
        tag: 0x9A,
        body: &body,
    }];
    let got = net.encode_int8_for(0x81, &ext);
    let mut want = net.raw_int8();
    let t = want.v2.as_mut().unwrap();
    t.plant = 0x81;
    t.extensions = vec![(0x9A, body.to_vec())];
    assert_eq!(got, want.blob());
    // A required extension this runtime does not know is never written.
    let req = [tinyppo_runtime::Extension {
        tag: 0x02,
        body: &body,
    }];
    let layers = [
        LayerSpec {
            weights: WeightsSpec::F32(&W0),
            bias: &B0,
        },
        LayerSpec {
            weights: WeightsSpec::F32(&W1),
            bias: &B1,
        },
    ];
    let spec = BlobSpec {
        extensions: &req,
        ..tiny_spec(&layers)
    };
    let mut buf = [0u8; 256];
    assert_eq!(
        format::encode(&spec, &mut buf),
        Err(EncodeError::Invalid(FormatError::UnknownExtension {
            tag: 0x02
        }))
    );
}

#[test]
fn each_bad_payload_returns_its_own_error() {
    for (name, raw, want, word) in payload_cases() {
        let err = parse_err(&raw);
        assert_eq!(err, want, "{name}");
        let msg = err.to_string();
        assert!(msg.contains(word), "{name}: {msg:?} should name {word:?}");
        // The typed loader reports the same error (payload checks come
        // before the caller's dimensions).
        assert_eq!(
            Policy::<3, 2, 8>::from_bytes(&raw.blob()).unwrap_err(),
            want,
            "{name}"
        );
    }
}

#[test]
fn log_std_and_values_on_the_limits_are_accepted() {
    let mut r = base().raw_int8();
    set_f32(&mut r.log_std, 0, -20.0);
    set_f32(&mut r.log_std, 1, 10.0);
    set_f32(&mut r.layers[0].bias, 0, -MAX_ABS_VALUE);
    set_f32(&mut r.layers[0].scales, 0, MAX_INT8_SCALE);
    r.layers[0].weights[0] = (-127i8) as u8;
    r.obs_clip = MAX_ABS_VALUE;
    let blob = r.blob();
    let p = Policy::<3, 2, 8>::from_bytes(&blob).unwrap();
    assert_eq!(p.log_std(), &[-20.0, 10.0]);
}

#[test]
fn malformed_payloads() {
    let good = base().raw_f32().encode();
    // A byte left over after the last layer.
    let mut p = good.clone();
    p.push(0);
    assert_eq!(
        Blob::parse(&frame_v2(&p)).unwrap_err(),
        FormatError::Malformed
    );
    // The payload ends inside a field.
    for n in [0, 1, 5, 30, good.len() - 1] {
        assert_eq!(
            Blob::parse(&frame_v2(&good[..n])).unwrap_err(),
            FormatError::Malformed,
            "{n}"
        );
    }
    // obs_dim: a u16 varint longer than 3 bytes, and one that overflows u16.
    let mut p = vec![0xFF, 0xFF, 0xFF, 0x01];
    p.extend_from_slice(&good[1..]);
    assert_eq!(
        Blob::parse(&frame_v2(&p)).unwrap_err(),
        FormatError::Malformed
    );
    let mut p = vec![0xFF, 0xFF, 0x04];
    p.extend_from_slice(&good[1..]);
    assert_eq!(
        Blob::parse(&frame_v2(&p)).unwrap_err(),
        FormatError::Malformed
    );
    // A byte string whose length runs past the payload.
    let mut r = base().raw_f32();
    r.layers[2].bias.clear();
    let mut p = r.encode();
    let at = p.len() - 1;
    p[at] = 0x7F;
    assert_eq!(
        Blob::parse(&frame_v2(&p)).unwrap_err(),
        FormatError::Malformed
    );
}

#[test]
fn non_canonical_varints_are_accepted_but_change_the_id() {
    // Postcard reads an over-long varint (here obs_dim = 3 as 0x83 0x00).
    // Writers must not emit it: the policy id would differ for the same
    // policy. Pinned so a change of postcard's behaviour shows up.
    let net = base();
    let good = net.raw_f32().encode();
    let mut p = vec![0x83, 0x00];
    p.extend_from_slice(&good[1..]);
    let (fa, fb) = (frame_v2(&good), frame_v2(&p));
    let (a, b) = (Blob::parse(&fa).unwrap(), Blob::parse(&fb).unwrap());
    assert_eq!(a.obs_dim, b.obs_dim);
    assert_ne!(a.policy_id, b.policy_id);
}

#[test]
fn caller_dimensions_are_checked() {
    let blob = base().encode_f32(); // obs 3, act 2, hidden [4, 5]
    use FormatError::*;
    let cases = [
        (
            Policy::<4, 2, 8>::from_bytes(&blob).unwrap_err(),
            ShapeMismatch {
                field: Field::ObsDim,
                expected: 4,
                found: 3,
            },
            "obs_dim",
        ),
        (
            Policy::<3, 1, 8>::from_bytes(&blob).unwrap_err(),
            ShapeMismatch {
                field: Field::ActDim,
                expected: 1,
                found: 2,
            },
            "act_dim",
        ),
        (
            Policy::<3, 2, 4>::from_bytes(&blob).unwrap_err(),
            BadWidth {
                field: Field::HiddenWidth(1),
                found: 5,
                max: 4,
            },
            "hidden[1]",
        ),
    ];
    for (err, want, word) in cases {
        assert_eq!(err, want);
        assert!(err.to_string().contains(word), "{err}");
    }
    assert!(Policy::<3, 2, 5>::from_bytes(&blob).is_ok());
    assert!(Policy::<3, 2, 256>::from_bytes(&blob).is_ok());
}

#[test]
fn framing_errors_display() {
    let cases: [(FormatError, &str); 7] = [
        (
            FormatError::Truncated {
                needed: 18,
                found: 3,
            },
            "truncated",
        ),
        (FormatError::BadMagic, "magic"),
        (FormatError::UnsupportedVersion { found: 3 }, "version 3"),
        (
            FormatError::TrailingBytes {
                expected: 98,
                found: 99,
            },
            "1 trailing",
        ),
        (
            FormatError::BadChecksum {
                stored: 1,
                computed: 2,
            },
            "checksum",
        ),
        (
            FormatError::PolicyIdMismatch {
                stored: 1,
                computed: 2,
            },
            "policy id",
        ),
        (FormatError::Malformed, "payload"),
    ];
    for (e, word) in cases {
        assert!(e.to_string().contains(word), "{e}");
    }
}

#[test]
fn encode_refuses_what_parse_refuses() {
    let layers = [
        LayerSpec {
            weights: WeightsSpec::F32(&[1.0, f32::NAN, 0.0, 0.0]),
            bias: &B0,
        },
        LayerSpec {
            weights: WeightsSpec::F32(&W1),
            bias: &B1,
        },
    ];
    let mut buf = [0u8; 256];
    assert_eq!(
        format::encode(&tiny_spec(&layers), &mut buf),
        Err(EncodeError::Invalid(FormatError::NonFinite {
            field: Field::Weights(0),
            index: 1
        }))
    );
    let mixed = [
        LayerSpec {
            weights: WeightsSpec::F32(&W0),
            bias: &B0,
        },
        LayerSpec {
            weights: WeightsSpec::Int8 {
                q: &Q1,
                scales: &S1,
            },
            bias: &B1,
        },
    ];
    assert_eq!(
        format::encode(&tiny_spec(&mixed), &mut buf),
        Err(EncodeError::MixedEncoding)
    );
    assert_eq!(
        format::encode(&tiny_spec(&[]), &mut buf),
        Err(EncodeError::MixedEncoding)
    );
    let ok = [
        LayerSpec {
            weights: WeightsSpec::F32(&W0),
            bias: &B0,
        },
        LayerSpec {
            weights: WeightsSpec::F32(&W1),
            bias: &B1,
        },
    ];
    assert_eq!(
        format::encode(&tiny_spec(&ok), &mut buf[..110]),
        Err(EncodeError::BufferTooSmall)
    );
    assert_eq!(format::encode(&tiny_spec(&ok), &mut buf[..111]), Ok(111));
    for e in [
        EncodeError::BufferTooSmall,
        EncodeError::MixedEncoding,
        EncodeError::TooLarge,
    ] {
        assert!(!e.to_string().is_empty());
    }
}
