//! int8 inference against f32 inference of the same float weights, within
//! the analytic error bound of `kernels.rs`, propagated layer by layer.
//!
//! Per layer, with `X` the exact input of the f32 path, `e_c` a bound on
//! the int8 path's input error `|X_c − X̃_c|` (0 for the first layer: both
//! paths see the same normalized observation), `s_r` the weight row scale
//! and `s_x` the int8 path's input scale:
//!
//! ```text
//! A      = max_c (|X_c| + e_c)              ≥ max_c |X̃_c|, so s_x ≤ A/127
//! |x̂_c|  ≤ |X_c| + e_c + A/254              (x̂ = s_x·p, the quantized input)
//! |y_r − ŷ_r| ≤ (s_r/2)·Σ_c |x̂_c| + Σ_c |w_rc|·(e_c + A/254) + slack_r
//! slack_r = 1e-5·(1 + Σ_c |w_rc·X_c| + |b_r|)   (f32 rounding of both paths)
//! ```
//!
//! from `y − ŷ = Σ_c (w_rc − s_r q_rc)·x̂_c + Σ_c w_rc·(X_c − x̂_c)`,
//! `|w − s q| ≤ s/2` and `|X − x̂| ≤ e + s_x/2`. tanh and relu are
//! 1-Lipschitz, so the bound passes through them unchanged; the last
//! layer's bound bounds `|μ_int8 − μ_f32|`. All bound arithmetic is f64.

use tinyppo_runtime::{Activation, Policy};

use crate::util::{random_obs, Net, TestRng};

/// Returns (worst |μ_int8 − μ_f32|, worst error/bound ratio).
fn check<const O: usize, const A: usize, const H: usize>(
    hidden: &[usize],
    act: Activation,
    seed: u64,
    policies: usize,
    obs_per_policy: usize,
) -> (f64, f64) {
    let mut rng = TestRng::new(seed);
    let (mut worst_err, mut worst_ratio) = (0.0f64, 0.0f64);
    for _ in 0..policies {
        let net = Net::random(&mut rng, O, A, hidden, act, (-1.0, 0.0));
        let q = net.quantized();
        // The quantizer's own guarantee: |w − s·q| ≤ s/2 (up to f32 rounding of w/s).
        for (l, ql) in net.layers.iter().zip(&q) {
            for (r, row) in l.w.chunks(l.cols).enumerate() {
                let s = ql.s[r] as f64;
                for (c, &w) in row.iter().enumerate() {
                    let d = (w as f64 - s * ql.q[r * l.cols + c] as f64).abs();
                    assert!(d <= s * 0.5 * (1.0 + 1e-6), "quantizer: {d} > {s}/2");
                }
            }
        }
        let (fb, qb) = (net.encode_f32(), net.encode_int8());
        let pf = Policy::<O, A, H>::from_bytes(&fb).unwrap();
        let pq = Policy::<O, A, H>::from_bytes(&qb).unwrap();
        for _ in 0..obs_per_policy {
            let obs: [f32; O] = random_obs(&mut rng, 2.0);
            // Both policies normalize identically (same f32 code, same bytes).
            let xhat = pf.normalize(&obs).unwrap();
            assert_eq!(xhat, pq.normalize(&obs).unwrap());
            let mut x: Vec<f64> = xhat.iter().map(|&v| v as f64).collect();
            let outs = net.forward64(&x);
            let mut e = vec![0.0f64; O];
            for ((l, ql), y_ref) in net.layers.iter().zip(&q).zip(&outs) {
                let a = x
                    .iter()
                    .zip(&e)
                    .map(|(x, e)| x.abs() + e)
                    .fold(0.0, f64::max);
                let half_sx = a / 254.0;
                let xq_abs: f64 = x.iter().zip(&e).map(|(x, e)| x.abs() + e + half_sx).sum();
                let mut next_e = Vec::with_capacity(l.rows);
                for (r, row) in l.w.chunks(l.cols).enumerate() {
                    let mut bound = 0.5 * ql.s[r] as f64 * xq_abs;
                    let mut mag = l.b[r].abs() as f64;
                    for ((&w, &xc), &ec) in row.iter().zip(&x).zip(&e) {
                        bound += (w as f64).abs() * (ec + half_sx);
                        mag += (w as f64 * xc).abs();
                    }
                    next_e.push(bound + 1e-5 * (1.0 + mag));
                }
                e = next_e;
                x = y_ref.clone();
            }
            let (mf, mq) = (pf.mean(&obs).unwrap(), pq.mean(&obs).unwrap());
            for j in 0..A {
                let err = (mq[j] as f64 - mf[j] as f64).abs();
                assert!(
                    err <= e[j],
                    "{O}-{hidden:?}-{A} {act:?}: |μ_int8 − μ_f32| = {err:e} > bound {:e}",
                    e[j]
                );
                worst_err = worst_err.max(err);
                worst_ratio = worst_ratio.max(err / e[j]);
            }
        }
    }
    (worst_err, worst_ratio)
}

#[test]
fn int8_mean_is_within_the_propagated_bound() {
    let mut all = (0.0f64, 0.0f64);
    for act in [Activation::Tanh, Activation::Relu] {
        let results = [
            ("2-16-1", check::<2, 1, 16>(&[16], act, 1, 20, 50)),
            ("3-64-64-1", check::<3, 1, 64>(&[64, 64], act, 2, 20, 50)),
            (
                "8-32-32-32-4",
                check::<8, 4, 32>(&[32, 32, 32], act, 3, 10, 50),
            ),
            (
                "32-256-256-8",
                check::<32, 8, 256>(&[256, 256], act, 4, 4, 25),
            ),
        ];
        for (name, (err, ratio)) in results {
            println!(
                "quant {name:>13} {:<4}: worst |μ_int8 − μ_f32| = {err:.3e}, worst error/bound = {ratio:.3}",
                act.name()
            );
            all = (all.0.max(err), all.1.max(ratio));
        }
    }
    println!(
        "quant overall: worst error {:.3e}, worst ratio {:.3}",
        all.0, all.1
    );
}

/// The forward pass exactly as `docs/FORMAT.md` ("Inference") specifies
/// it, written naively in f32: f32 layers accumulate `acc = b; acc += w·x`
/// column by column; int8 layers quantize the input with
/// `s_x = amax/127`, `p = round_half_away(x·(127/amax))`, accumulate
/// `Σ q·p` in i32 and compute `acc·(s_r·s_x) + b`.
fn forward_spec(net: &Net, int8: bool, xhat: &[f32]) -> Vec<f32> {
    let q = net.quantized();
    let mut x = xhat.to_vec();
    for (i, (l, ql)) in net.layers.iter().zip(&q).enumerate() {
        let mut y = Vec::with_capacity(l.rows);
        if int8 {
            let amax = x
                .iter()
                .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
            let (p, sx): (Vec<i32>, f32) = if amax == 0.0 {
                (vec![0; x.len()], 0.0)
            } else {
                let inv = 127.0 / amax;
                let p = x
                    .iter()
                    .map(|&v| {
                        let t = v * inv;
                        let r = if t >= 0.0 { t + 0.5 } else { t - 0.5 };
                        (r as i32).clamp(-127, 127)
                    })
                    .collect();
                (p, amax / 127.0)
            };
            for r in 0..l.rows {
                let acc: i32 = (0..l.cols)
                    .map(|c| ql.q[r * l.cols + c] as i32 * p[c])
                    .sum();
                y.push(acc as f32 * (ql.s[r] * sx) + l.b[r]);
            }
        } else {
            for r in 0..l.rows {
                let mut acc = l.b[r];
                for (c, &xc) in x.iter().enumerate() {
                    acc += l.w[r * l.cols + c] * xc;
                }
                y.push(acc);
            }
        }
        if i + 1 < net.layers.len() {
            for v in &mut y {
                *v = match net.activation {
                    Activation::Tanh => libm::tanhf(*v),
                    Activation::Relu => v.max(0.0),
                };
            }
        }
        x = y;
    }
    x
}

#[test]
fn forward_pass_is_bit_exact_to_the_spec() {
    // Pins the arithmetic (order of accumulation, int8 rounding) that makes
    // a host simulation reproduce a device log bit for bit.
    let mut rng = TestRng::new(77);
    for act in [Activation::Tanh, Activation::Relu] {
        for _ in 0..10 {
            let net = Net::random(&mut rng, 5, 3, &[24, 16, 8], act, (-1.0, 0.0));
            let (fb, qb) = (net.encode_f32(), net.encode_int8());
            let pf = Policy::<5, 3, 24>::from_bytes(&fb).unwrap();
            let pq = Policy::<5, 3, 24>::from_bytes(&qb).unwrap();
            for k in 0..50 {
                // Include an all-zero normalized input (s_x = 0).
                let obs: [f32; 5] = if k == 0 {
                    net.obs_mean.clone().try_into().unwrap()
                } else {
                    random_obs(&mut rng, 2.0)
                };
                let xhat = pf.normalize(&obs).unwrap();
                for (p, int8) in [(&pf, false), (&pq, true)] {
                    let got: Vec<u32> = p.mean(&obs).unwrap().iter().map(|v| v.to_bits()).collect();
                    let want: Vec<u32> = forward_spec(&net, int8, &xhat)
                        .iter()
                        .map(|v| v.to_bits())
                        .collect();
                    assert_eq!(got, want, "int8 = {int8}");
                }
            }
        }
    }
}
