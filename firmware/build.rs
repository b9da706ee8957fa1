//! Build-time inputs of tinyppo's firmware, through
//! `tinyppo-firmware-build` (the same helper a firmware of yours uses):
//!
//! - the policy blob `TINYPPO_POLICY` (default `policies/pendulum.bin`),
//!   checked with the runtime's own parser; its plant code picks the
//!   simulated plant of the QEMU firmware (`src/main.rs`), so it must be a
//!   built-in plant's, and the board binary needs a pendulum blob (both
//!   checked at compile time);
//! - the run configuration `TINYPPO_EPISODES`, `TINYPPO_SEED`,
//!   `TINYPPO_DETERMINISTIC`, written to `$OUT_DIR/tinyppo_config.rs`;
//! - `-Tlink.x` (the memory map comes from `tinyppo-boards`' board feature);
//! - with feature `bench`: six random benchmark policies (3-64-64-1 and
//!   32-256-256-8, f32, int8 and int8x4, fixed seed) encoded with the host
//!   build of the runtime's `format::encode` into `$OUT_DIR`, and the
//!   embedded policy re-encoded as int8x4 (the same weights).

fn main() {
    let _config = tinyppo_firmware_build::Firmware::new()
        .default_policy("policies/pendulum.bin")
        .emit();

    #[cfg(feature = "bench")]
    {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
        bench_blobs::write_all(&out);
        bench_blobs::write_x4_policy(&_config.policy, &out);
    }
}

/// Writes `bytes` unless the file already holds them (keeps mtimes, so an
/// unchanged configuration does not recompile the crate).
#[cfg(feature = "bench")]
fn write_if_changed(path: &std::path::Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

#[cfg(feature = "bench")]
mod bench_blobs {
    //! Random policies for `bench`: weights `U(−1, 1)/√fan_in` from a
    //! SplitMix64 stream with a fixed seed, biases `U(−0.1, 0.1)`, tanh,
    //! identity normalization, bounds ±2, `log_std = −0.5`. int8 blobs
    //! quantize the same weights per row: `s_r = max_c |w_rc| / 127`,
    //! `q_rc = round(w_rc / s_r)`.
    use std::fmt::Write as _;
    use std::path::Path;

    use tinyppo_runtime::{format, Activation, BlobSpec, LayerSpec, WeightsSpec};

    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [−1, 1).
        fn sym(&mut self) -> f32 {
            ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// (name, obs, hidden, act)
    const SHAPES: [(&str, usize, usize, usize); 2] = [("small", 3, 64, 1), ("large", 32, 256, 8)];

    pub fn write_all(out: &Path) {
        let mut index = String::new();
        for (name, obs, hid, act) in SHAPES {
            let mut rng = SplitMix(0x7119_0BE4 ^ ((obs as u64) << 32) ^ (hid as u64));
            let dims = [(hid, obs), (hid, hid), (act, hid)];
            let layers: Vec<(Vec<f32>, Vec<f32>)> = dims
                .iter()
                .map(|&(rows, cols)| {
                    let k = 1.0 / (cols as f32).sqrt();
                    let w = (0..rows * cols).map(|_| rng.sym() * k).collect();
                    let b = (0..rows).map(|_| rng.sym() * 0.1).collect();
                    (w, b)
                })
                .collect();
            let quant: Vec<(Vec<i8>, Vec<f32>)> = dims
                .iter()
                .zip(&layers)
                .map(|(&(_, cols), (w, _))| {
                    let mut q = Vec::with_capacity(w.len());
                    let mut scales = Vec::new();
                    for row in w.chunks(cols) {
                        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                        let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                        scales.push(s);
                        q.extend(
                            row.iter()
                                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
                        );
                    }
                    (q, scales)
                })
                .collect();
            let (mean, inv_std) = (vec![0.0f32; obs], vec![1.0f32; obs]);
            let (low, high, log_std) = (vec![-2.0f32; act], vec![2.0f32; act], vec![-0.5f32; act]);
            for encoding in ["f32", "int8", "int8x4"] {
                let specs: Vec<LayerSpec> = layers
                    .iter()
                    .zip(&quant)
                    .map(|((w, b), (q, s))| LayerSpec {
                        weights: match encoding {
                            "f32" => WeightsSpec::F32(w),
                            "int8" => WeightsSpec::Int8 { q, scales: s },
                            _ => WeightsSpec::Int8x4 { q, scales: s },
                        },
                        bias: b,
                    })
                    .collect();
                let spec = BlobSpec {
                    obs_dim: obs,
                    act_dim: act,
                    hidden: &[hid, hid],
                    activation: Activation::Tanh,
                    obs_mean: &mean,
                    obs_inv_std: &inv_std,
                    obs_clip: 10.0,
                    action_low: &low,
                    action_high: &high,
                    log_std: &log_std,
                    layers: &specs,
                    plant: tinyppo_runtime::plants::code::UNSPECIFIED,
                    safe_action: &vec![0.0f32; act],
                    extensions: &[],
                };
                let mut buf = vec![0u8; format::max_encoded_len(&spec)];
                let n = format::encode(&spec, &mut buf).expect("bench blob encodes");
                let file = format!("bench-{name}-{encoding}.bin");
                super::write_if_changed(&out.join(&file), &buf[..n]);
                let _ = writeln!(
                    index,
                    "/// {obs}-{hid}-{hid}-{act}, {encoding}, {n} bytes.\n{}",
                    aligned_static(
                        &format!("{}_{}", name.to_uppercase(), encoding.to_uppercase()),
                        &file
                    )
                );
            }
        }
        super::write_if_changed(&out.join("bench_blobs.rs"), index.as_bytes());
    }

    /// `pub static NAME: &[u8]` of `$OUT_DIR/file`, word-aligned (as
    /// `embed_policy!` embeds a blob, so int8x4 layers are aligned).
    fn aligned_static(name: &str, file: &str) -> String {
        format!(
            "pub static {name}: &[u8] = {{\n\
                 #[repr(C, align(4))]\n\
                 struct Aligned<T: ?Sized>(T);\n\
                 static A: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\")));\n\
                 &A.0\n\
             }};"
        )
    }

    /// The embedded policy `path` (int8) re-encoded as int8x4, the same
    /// weights, as `POLICY_X4` in `$OUT_DIR/bench_policy_x4.rs` (empty for
    /// an f32 blob): the bench's control tick with the interleaved kernel.
    pub fn write_x4_policy(path: &Path, out: &Path) {
        let bytes = std::fs::read(path).expect("the policy blob was checked");
        let b = tinyppo_runtime::Blob::parse(&bytes).expect("the policy blob was checked");
        let rs = if b.encoding.is_int8() {
            let safe: Vec<f32> = b.safe_action().collect();
            let exts: Vec<_> = b.extensions().collect();
            let x4 = format::owned::OwnedBlob::of(&b)
                .encode(tinyppo_runtime::Encoding::Int8x4, b.plant, &safe, &exts)
                .expect("the policy re-encodes");
            super::write_if_changed(&out.join("bench-policy-x4.bin"), &x4);
            aligned_static("POLICY_X4", "bench-policy-x4.bin")
        } else {
            "pub static POLICY_X4: &[u8] = &[];".to_owned()
        };
        super::write_if_changed(&out.join("bench_policy_x4.rs"), rs.as_bytes());
    }
}
