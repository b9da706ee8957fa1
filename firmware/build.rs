//! Build-time inputs of the firmware.
//!
//! - The memory map (`memory/mps2-an386.x` for QEMU's MPS2 AN386,
//!   `memory/stm32f411.x` with feature `board-f411`) copied to
//!   `$OUT_DIR/memory.x` on the linker search path, and `-Tlink.x` for the
//!   binaries (cortex-m-rt's linker script, which includes `memory.x`).
//! - The policy blob: `TINYPPO_POLICY` (a path; relative paths are relative
//!   to this directory), default `policies/pendulum.bin`. `main.rs` embeds
//!   it with `include_bytes!(env!("TINYPPO_POLICY_FILE"))`.
//! - The plant `TINYPPO_ENV` (`pendulum`, `mountain-car`, `cartpole`,
//!   `dc-motor`; default `pendulum`) as `cfg(tinyppo_plant = "…")`, checked
//!   against the blob's observation and action dimensions.
//! - The run configuration `TINYPPO_EPISODES` (default 3), `TINYPPO_SEED`
//!   (default 1) and `TINYPPO_DETERMINISTIC` (`0`/`1`, default 0), and the
//!   blob's dimensions, written to `$OUT_DIR/config.rs` as constants.
//! - With feature `bench`: four random benchmark policies (3-64-64-1 and
//!   32-256-256-8, f32 and int8, fixed seed) encoded with the host build of
//!   the runtime's `format::encode` into `$OUT_DIR`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    // Linker script: QEMU's MPS2 AN386, or the STM32F411 with `board-f411`.
    // The memory maps live in `memory/` under other names: the linker looks
    // for `INCLUDE memory.x` in its working directory (this one) before the
    // search path, so a `memory.x` here would win over the board's.
    let memory = if env::var_os("CARGO_FEATURE_BOARD_F411").is_some() {
        "memory/stm32f411.x"
    } else {
        "memory/mps2-an386.x"
    };
    fs::copy(manifest_dir.join(memory), out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copy {memory} to OUT_DIR: {e}"));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");

    // Policy blob.
    println!("cargo:rerun-if-env-changed=TINYPPO_POLICY");
    let policy = match env::var_os("TINYPPO_POLICY") {
        Some(p) if !p.is_empty() => manifest_dir.join(p),
        _ => manifest_dir.join("policies/pendulum.bin"),
    };
    let policy = policy.canonicalize().unwrap_or_else(|e| {
        panic!(
            "TINYPPO_POLICY: cannot read policy blob {}: {e}",
            policy.display()
        )
    });
    let blob =
        fs::read(&policy).unwrap_or_else(|e| panic!("cannot read {}: {e}", policy.display()));
    let dims = blob_dims(&blob).unwrap_or_else(|why| panic!("{}: {why}", policy.display()));
    println!("cargo:rerun-if-changed={}", policy.display());
    println!("cargo:rustc-env=TINYPPO_POLICY_FILE={}", policy.display());

    // Plant.
    println!("cargo:rerun-if-env-changed=TINYPPO_ENV");
    let plant = env::var("TINYPPO_ENV")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "pendulum".into());
    let names: Vec<String> = PLANTS.iter().map(|p| format!("\"{}\"", p.0)).collect();
    println!(
        "cargo:rustc-check-cfg=cfg(tinyppo_plant, values({}))",
        names.join(", ")
    );
    let Some(plant_id) = PLANTS.iter().position(|p| p.0 == plant) else {
        panic!("TINYPPO_ENV={plant:?} is not one of {}", names.join(", "))
    };
    let (_, obs, act) = PLANTS[plant_id];
    if (dims.obs, dims.act) != (obs, act) {
        panic!(
            "{}: the policy has {} observations and {} actions, but plant `{plant}` has {obs} and {act} \
             (set TINYPPO_ENV / --env to the plant the policy was trained on)",
            policy.display(),
            dims.obs,
            dims.act
        );
    }
    println!("cargo:rustc-cfg=tinyppo_plant=\"{plant}\"");

    // Run configuration.
    let episodes: u32 = parse_env("TINYPPO_EPISODES", 3);
    let seed: u64 = parse_env("TINYPPO_SEED", 1);
    let deterministic: u8 = parse_env("TINYPPO_DETERMINISTIC", 0);
    if deterministic > 1 {
        panic!("TINYPPO_DETERMINISTIC must be 0 or 1, not {deterministic}");
    }
    let config = format!(
        "/// Observation dimension of the embedded policy.\n\
         pub const OBS: usize = {};\n\
         /// Action dimension of the embedded policy.\n\
         pub const ACT: usize = {};\n\
         /// Widest hidden layer of the embedded policy.\n\
         pub const HID: usize = {};\n\
         /// The simulated plant (`TINYPPO_ENV`).\n\
         pub const PLANT: &str = \"{plant}\";\n\
         /// Its code in log headers (index in `plants::NAMES`).\n\
         pub const PLANT_ID: u8 = {plant_id};\n\
         /// Episodes to simulate (`TINYPPO_EPISODES` at build time).\n\
         pub const EPISODES: u32 = {episodes};\n\
         /// RNG seed (`TINYPPO_SEED` at build time).\n\
         pub const SEED: u64 = {seed};\n\
         /// Apply the mean action instead of sampling (`TINYPPO_DETERMINISTIC=1`).\n\
         pub const DETERMINISTIC: bool = {};\n",
        dims.obs,
        dims.act,
        dims.hid,
        deterministic == 1
    );
    write_if_changed(&out.join("config.rs"), config.as_bytes());

    #[cfg(feature = "bench")]
    bench_blobs::write_all(&out);
}

/// The built-in plants: name, observation and action dimensions, in the
/// order of `plants::NAMES` (the log's plant code).
const PLANTS: [(&str, usize, usize); 4] = [
    ("pendulum", 3, 1),
    ("mountain-car", 2, 1),
    ("cartpole", 4, 1),
    ("dc-motor", 3, 1),
];

struct Dims {
    obs: usize,
    act: usize,
    hid: usize,
}

/// The dimensions at the start of a v1 blob's payload (docs/FORMAT.md):
/// after the 14-byte header, postcard varints `obs_dim`, `act_dim`, the
/// number of hidden layers and their widths. The device checks the whole
/// blob again (CRC, values) before using it.
fn blob_dims(blob: &[u8]) -> Result<Dims, String> {
    if !blob.starts_with(b"TPPO") {
        return Err("not a tinyppo policy blob (no `TPPO` magic)".into());
    }
    let mut at = 14;
    let mut varint = || -> Result<usize, String> {
        let mut v = 0usize;
        for shift in (0..35).step_by(7) {
            let b = *blob.get(at).ok_or("truncated blob")?;
            at += 1;
            v |= usize::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("bad varint in the blob payload".into())
    };
    let obs = varint()?;
    let act = varint()?;
    let n = varint()?;
    if !(1..=3).contains(&n) {
        return Err(format!("{n} hidden layers (1-3 expected)"));
    }
    let mut hid = 0;
    for _ in 0..n {
        hid = hid.max(varint()?);
    }
    if [obs, act, hid].iter().any(|&d| d == 0 || d > 256) {
        return Err(format!("dimensions {obs}/{act}/{hid} outside 1..=256"));
    }
    Ok(Dims { obs, act, hid })
}

fn parse_env<T: std::str::FromStr>(name: &str, default: T) -> T
where
    T::Err: std::fmt::Display,
{
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) if !v.is_empty() => v.trim().parse().unwrap_or_else(|e| {
            panic!(
                "{name}={v:?} is not a valid {}: {e}",
                std::any::type_name::<T>()
            )
        }),
        _ => default,
    }
}

/// Writes `bytes` unless the file already holds them (keeps mtimes, so an
/// unchanged configuration does not recompile the crate).
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
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
            for encoding in ["f32", "int8"] {
                let specs: Vec<LayerSpec> = layers
                    .iter()
                    .zip(&quant)
                    .map(|((w, b), (q, s))| LayerSpec {
                        weights: if encoding == "f32" {
                            WeightsSpec::F32(w)
                        } else {
                            WeightsSpec::Int8 { q, scales: s }
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
                    "/// {obs}-{hid}-{hid}-{act}, {encoding}, {n} bytes.\n\
                     pub static {}_{}: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\"));",
                    name.to_uppercase(),
                    encoding.to_uppercase()
                );
            }
        }
        super::write_if_changed(&out.join("bench_blobs.rs"), index.as_bytes());
    }
}
