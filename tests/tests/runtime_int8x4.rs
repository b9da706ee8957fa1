//! `Encoding::Int8x4` (issue 13): the interleaved, word-aligned int8
//! layout computes exactly what row-major int8 computes, its layers are
//! where the spec says, and bad padding is refused with the field named.

use tinyppo_runtime::format::{interleavable, Blob};
use tinyppo_runtime::kernels::{self, QVec};
use tinyppo_runtime::{rng, Activation, Encoding, FormatError, Policy};

use crate::util::{frame_v, payload_of, random_obs, Net, TestRng};

fn same_policy<const O: usize, const A: usize, const H: usize>(net: &Net, seed: u64) {
    let (a, b) = (net.encode_int8(), net.encode_int8x4());
    let (ba, bb) = (Blob::parse(&a).unwrap(), Blob::parse(&b).unwrap());
    assert_eq!(bb.encoding, Encoding::Int8x4);
    for (la, lb) in ba.layers().zip(bb.layers()) {
        assert_eq!(
            lb.interleaved,
            interleavable(lb.rows, lb.cols),
            "{}x{}",
            lb.rows,
            lb.cols
        );
        assert!(!la.interleaved);
        if lb.interleaved {
            let offset = lb.weights.as_ptr() as usize - b.as_ptr() as usize;
            assert_eq!(
                offset % 4,
                0,
                "interleaved weights start at a multiple of 4"
            );
        }
        for r in 0..la.rows {
            for c in 0..la.cols {
                assert_eq!(la.q(r, c), lb.q(r, c), "q[{r}][{c}]");
            }
        }
    }
    let (pa, pb) = (
        Policy::<O, A, H>::from_bytes(&a).unwrap(),
        Policy::<O, A, H>::from_bytes(&b).unwrap(),
    );
    let mut t = TestRng::new(seed);
    let (mut ra, mut rb) = (rng::seeded(seed), rng::seeded(seed));
    for _ in 0..50 {
        let obs: [f32; O] = random_obs(&mut t, 2.0);
        let (ma, mb) = (pa.mean(&obs).unwrap(), pb.mean(&obs).unwrap());
        assert_eq!(ma.map(f32::to_bits), mb.map(f32::to_bits));
        let (sa, sb) = (
            pa.act(&obs, &mut ra).unwrap(),
            pb.act(&obs, &mut rb).unwrap(),
        );
        assert_eq!(sa.applied.map(f32::to_bits), sb.applied.map(f32::to_bits));
        assert_eq!(sa.log_prob.to_bits(), sb.log_prob.to_bits());
    }
}

#[test]
fn int8x4_acts_bit_for_bit_like_int8_on_every_shape_mix() {
    let mut t = TestRng::new(41);
    // Interleaved and row-major layers mixed: 3 inputs (row-major first
    // layer), 64-wide hidden (interleaved), heads of 1 (row-major) and
    // 8 (interleaved: 8 rows, 64 columns), 12-wide (12 % 8 ≠ 0), relu.
    same_policy::<3, 1, 64>(
        &Net::random(&mut t, 3, 1, &[64, 64], Activation::Tanh, (-1.0, 0.0)),
        1,
    );
    same_policy::<32, 8, 64>(
        &Net::random(&mut t, 32, 8, &[64, 64], Activation::Tanh, (-1.0, 0.0)),
        2,
    );
    same_policy::<16, 4, 24>(
        &Net::random(&mut t, 16, 4, &[24, 12], Activation::Relu, (-1.0, 0.0)),
        3,
    );
    same_policy::<8, 2, 256>(
        &Net::random(&mut t, 8, 2, &[256, 32, 16], Activation::Tanh, (-1.0, 0.0)),
        4,
    );
}

#[test]
fn the_portable_interleaved_kernel_sums_like_the_row_major_one() {
    let mut t = TestRng::new(7);
    for &(rows, cols) in &[(4usize, 8usize), (8, 16), (64, 64), (12, 40), (256, 32)] {
        let w: Vec<i8> = (0..rows * cols)
            .map(|_| (t.below(255) as i32 - 127) as i8)
            .collect();
        let row_major: Vec<u8> = w.iter().map(|&v| v as u8).collect();
        let mut inter = vec![0u8; rows * cols];
        let mut i = 0;
        for g in 0..rows / 4 {
            for k in 0..cols / 4 {
                for j in 0..4 {
                    for c in 0..4 {
                        inter[i] = w[(4 * g + j) * cols + 4 * k + c] as u8;
                        i += 1;
                    }
                }
            }
        }
        let x: Vec<f32> = (0..cols).map(|_| t.uniform(-1.0, 1.0) as f32).collect();
        let mut q = QVec::<256>::new();
        kernels::quantize(&x, &mut q);
        let (mut a, mut b) = (vec![0i32; rows], vec![1i32; rows]);
        kernels::matvec_i8(&row_major, q.as_input(cols), &mut a);
        kernels::matvec_i8x4(&inter, q.as_input(cols), &mut b);
        assert_eq!(a, b, "{rows}x{cols}");
        // A shape it does not take gives zeros, never a panic.
        let mut c = vec![5i32; rows + 1];
        kernels::matvec_i8x4(&inter, q.as_input(cols), &mut c);
        assert!(c.iter().all(|&v| v == 0));
    }
}

/// The blob's bytes with the payload replaced (CRC and id recomputed).
fn reframe(blob: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut p = payload_of(blob).to_vec();
    edit(&mut p);
    frame_v(&p, 2)
}

#[test]
fn padding_must_be_zero_and_counted() {
    // 5 inputs: the first layer (64 × 5) is row-major; the second
    // (64 × 64) interleaved, after however many zero bytes align it.
    let mut t = TestRng::new(9);
    let net = Net::random(&mut t, 5, 1, &[64, 64], Activation::Tanh, (-1.0, 0.0));
    let blob = net.encode_int8x4();
    let b = Blob::parse(&blob).unwrap();
    let l1 = b.layers().nth(1).unwrap();
    assert!(l1.interleaved);
    // The byte string of layer 1 starts with its length varint (2 bytes:
    // 4096 + pad); the pad is what lies between its end and the weights.
    let w_at = l1.weights.as_ptr() as usize - blob.as_ptr() as usize;
    let pad = (0..4)
        .find(|&p| {
            let len = 4096 + p;
            let v = [(len as u8) | 0x80, (len >> 7) as u8];
            blob.get(w_at - p - 2..w_at - p) == Some(&v[..])
        })
        .expect("a 2-byte length varint before the padding");
    assert!(pad > 0, "this net's second layer needs padding ({pad})");
    {
        let in_payload = w_at - 14 - pad;
        let bad = reframe(&blob, |p| p[in_payload] = 1);
        match Blob::parse(&bad) {
            Err(FormatError::OutOfRange { field, index }) => {
                assert_eq!(
                    (format!("{field}"), index),
                    ("layers[1].weights".to_owned(), 0)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // One weight byte short: the expected length counts the padding.
    let short = reframe(&blob, |p| {
        let at = w_at - 14 - pad - 2;
        let len = 4096 + pad - 1;
        p[at] = (len as u8) | 0x80;
        p[at + 1] = (len >> 7) as u8;
        p.remove(w_at - 14);
    });
    match Blob::parse(&short) {
        Err(FormatError::LengthMismatch {
            field,
            expected,
            found,
        }) => {
            assert_eq!(format!("{field}"), "layers[1].weights");
            assert_eq!((expected, found), (pad + 4096, pad + 4095));
        }
        other => panic!("{other:?}"),
    }
}

/// The layout by hand: an 8-input, 4-unit first layer with
/// `q[r][c] = 8r + c + 1` is stored, after its padding, as rows 0–3 of
/// columns 0–3, then rows 0–3 of columns 4–7 (`docs/FORMAT.md`,
/// "Interleaved int8"); the 1 × 4 head stays row-major.
#[test]
fn golden_int8x4_layer_bytes() {
    use tinyppo_runtime::format::{self, BlobSpec, LayerSpec, WeightsSpec};
    let q0: Vec<i8> = (0..32).map(|i| i as i8 + 1).collect();
    let q1 = [10i8, -20, 30, -40];
    let layers = [
        LayerSpec {
            weights: WeightsSpec::Int8x4 {
                q: &q0,
                scales: &[0.01; 4],
            },
            bias: &[0.0; 4],
        },
        LayerSpec {
            weights: WeightsSpec::Int8x4 {
                q: &q1,
                scales: &[0.02],
            },
            bias: &[0.5],
        },
    ];
    let spec = BlobSpec {
        obs_dim: 8,
        act_dim: 1,
        hidden: &[4],
        activation: Activation::Tanh,
        obs_mean: &[0.0; 8],
        obs_inv_std: &[1.0; 8],
        obs_clip: 5.0,
        action_low: &[-1.0],
        action_high: &[1.0],
        log_std: &[-0.5],
        layers: &layers,
        plant: 0xFF,
        safe_action: &[0.0],
        extensions: &[],
    };
    let mut buf = vec![0u8; format::max_encoded_len(&spec)];
    let n = format::encode(&spec, &mut buf).unwrap();
    let blob = &buf[..n];
    #[rustfmt::skip]
    let interleaved: [u8; 32] = [
        1, 2, 3, 4,   9, 10, 11, 12,   17, 18, 19, 20,   25, 26, 27, 28,
        5, 6, 7, 8,   13, 14, 15, 16,  21, 22, 23, 24,   29, 30, 31, 32,
    ];
    // Header 14 bytes; obs_dim, act_dim, hidden (2), activation, encoding:
    // 6 bytes; obs_mean, obs_inv_std: 1 + 32 each; obs_clip 4; bounds and
    // log-std 1 + 4 each; the layer count 1: layer 0's byte string starts
    // at 14 + 6 + 66 + 4 + 15 + 1 = 106, its length varint (1 byte) at
    // 106, its content at 107, so 1 zero byte brings the weights to 108.
    assert_eq!(blob[20 - 1], 2, "encoding code 2");
    assert_eq!(&blob[106..108], &[33, 0], "length 1 + 32, then the padding");
    assert_eq!(&blob[108..140], &interleaved[..]);
    // Then layer 0's 4 scales and 4 biases, then the head row-major.
    let b = Blob::parse(blob).unwrap();
    let (l0, l1) = (b.layers().next().unwrap(), b.layers().nth(1).unwrap());
    assert!(l0.interleaved && !l1.interleaved);
    assert_eq!(l0.weights.as_ptr() as usize - blob.as_ptr() as usize, 108);
    assert_eq!(l1.weights, &[10u8, 236, 30, 216][..]);
    assert_eq!((l0.q(2, 5), l0.q(3, 7)), (22, 32));
    assert_eq!(b.len, n);
}

/// `format::owned` re-encodes an int8 blob in the other layout, byte for
/// byte what encoding it that way directly gives, and back; it refuses to
/// turn f32 weights into int8 or back.
#[test]
fn an_owned_copy_reencodes_either_int8_layout_exactly() {
    use tinyppo_runtime::format::owned::OwnedBlob;
    use tinyppo_runtime::EncodeError;
    let mut t = TestRng::new(12);
    let net = Net::random(&mut t, 16, 4, &[64, 24], Activation::Tanh, (-1.0, 0.0));
    let (row_major, x4) = (net.encode_int8(), net.encode_int8x4());
    let owned = OwnedBlob::of(&Blob::parse(&row_major).unwrap());
    let b = Blob::parse(&row_major).unwrap();
    let safe: Vec<f32> = b.safe_action().collect();
    assert_eq!(
        owned.encode(Encoding::Int8x4, b.plant, &safe, &[]).unwrap(),
        x4
    );
    let back = OwnedBlob::of(&Blob::parse(&x4).unwrap());
    assert_eq!(back.encoding, Encoding::Int8x4);
    assert_eq!(
        (&back.layers, &back.obs_mean),
        (&owned.layers, &owned.obs_mean)
    );
    assert_eq!(
        back.encode(Encoding::Int8, b.plant, &safe, &[]).unwrap(),
        row_major
    );
    assert_eq!(
        owned.encode(Encoding::F32, b.plant, &safe, &[]),
        Err(EncodeError::MixedEncoding)
    );
    let f32_blob = OwnedBlob::of(&Blob::parse(&net.encode_f32()).unwrap());
    assert_eq!(
        f32_blob.encode(Encoding::Int8x4, b.plant, &safe, &[]),
        Err(EncodeError::MixedEncoding)
    );
}
