//! Time per `Policy::act` and `Policy::mean` on the host, for a small
//! (3-64-64-1) and a large (32-256-256-8) tanh policy, f32 and int8.
//!
//! Weights are random with a fixed seed (N(0, 1/fan_in)-like, uniform),
//! int8 by per-row max-abs quantization. Host numbers only rank the
//! variants; device cycles come from the firmware's own measurements.
//!
//! `cargo bench -p tinyppo-runtime` (short warm-up and measurement times:
//! the whole run takes about a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tinyppo_runtime::format::{encode, max_encoded_len};
use tinyppo_runtime::rng::{self, DefaultRng};
use tinyppo_runtime::{Activation, BlobSpec, LayerSpec, Policy, WeightsSpec};

/// A random `obs-hidden…-act` tanh policy blob, f32 or int8.
fn blob(obs: usize, hidden: &[usize], act: usize, int8: bool, seed: u64) -> Vec<u8> {
    let mut r = rng::seeded(seed);
    let mut dense = Vec::new(); // (rows, cols, weights, bias)
    let mut cols = obs;
    for &rows in hidden.iter().chain([act].iter()) {
        let a = (3.0 / cols as f32).sqrt();
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng::uniform(&mut r, -a, a))
            .collect();
        let b: Vec<f32> = (0..rows).map(|_| rng::uniform(&mut r, -0.1, 0.1)).collect();
        dense.push((rows, cols, w, b));
        cols = rows;
    }
    let quant: Vec<(Vec<i8>, Vec<f32>)> = dense
        .iter()
        .map(|(_, cols, w, _)| {
            let mut q = Vec::new();
            let mut s = Vec::new();
            for row in w.chunks(*cols) {
                let scale = row.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
                s.push(scale);
                q.extend(
                    row.iter()
                        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
                );
            }
            (q, s)
        })
        .collect();
    let layers: Vec<LayerSpec> = dense
        .iter()
        .zip(&quant)
        .map(|((_, _, w, b), (q, s))| LayerSpec {
            weights: if int8 {
                WeightsSpec::Int8 { q, scales: s }
            } else {
                WeightsSpec::F32(w)
            },
            bias: b,
        })
        .collect();
    let spec = BlobSpec {
        obs_dim: obs,
        act_dim: act,
        hidden,
        activation: Activation::Tanh,
        obs_mean: &vec![0.0; obs],
        obs_inv_std: &vec![1.0; obs],
        obs_clip: 10.0,
        action_low: &vec![-2.0; act],
        action_high: &vec![2.0; act],
        log_std: &vec![-0.5; act],
        layers: &layers,
        plant: tinyppo_runtime::plants::code::UNSPECIFIED,
        safe_action: &vec![0.0; act],
        extensions: &[],
    };
    let mut buf = vec![0u8; max_encoded_len(&spec)];
    let n = encode(&spec, &mut buf).expect("valid bench policy");
    buf.truncate(n);
    buf
}

fn bench_policy<const OBS: usize, const ACT: usize, const HID: usize>(
    c: &mut Criterion,
    name: &str,
    hidden: &[usize],
) {
    for int8 in [false, true] {
        let bytes = blob(OBS, hidden, ACT, int8, 42);
        let policy = Policy::<OBS, ACT, HID>::from_bytes(&bytes).expect("loads");
        let enc = if int8 { "int8" } else { "f32" };
        let mut r: DefaultRng = rng::seeded(7);
        let obs: [f32; OBS] = core::array::from_fn(|_| rng::uniform(&mut r, -1.0, 1.0));
        c.bench_function(&format!("act/{name}/{enc}"), |b| {
            b.iter(|| policy.act(black_box(&obs), &mut r).unwrap())
        });
        c.bench_function(&format!("mean/{name}/{enc}"), |b| {
            b.iter(|| policy.mean(black_box(&obs)).unwrap())
        });
    }
}

fn benches(c: &mut Criterion) {
    bench_policy::<3, 1, 64>(c, "3-64-64-1", &[64, 64]);
    bench_policy::<32, 8, 256>(c, "32-256-256-8", &[256, 256]);
}

criterion_group! {
    name = act;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = benches
}
criterion_main!(act);
