//! int8 inference against f32 inference of the same float weights, within
//! the analytic error bound of `kernels.rs`, propagated layer by layer; the
//! forward pass and the shared tanh against `docs/FORMAT.md`, bit for bit.
//!
//! Per layer, with `X` the exact input of the f32 path, `e_c` a bound on
//! the int8 path's input error before quantization (0 for the first layer:
//! both paths see the same normalized observation; after that the bound on
//! the previous layer's pre-activation error, which tanh and relu, being
//! 1-Lipschitz, pass through unchanged), `h_c` a bound on the quantization
//! step's own error and `s_r` the weight row scale:
//!
//! ```text
//! dynamic (layer 0, after relu):  A = max_c (|X_c| + e_c) ≥ max_c |X̃_c|,
//!                                 s_x ≤ A/127, h_c = A/254
//! fixed (after tanh):             h_c = 1/254 + 1e-7  (rounding of 127·tanh,
//!                                 the f32 rounding of s_x = 1/127)
//! |x̂_c|  ≤ |X_c| + e_c + h_c      (x̂ = s_x·p, the quantized input)
//! |y_r − ŷ_r| ≤ (s_r/2)·Σ_c |x̂_c| + Σ_c |w_rc|·(e_c + h_c) + slack_r
//! slack_r = 1e-5·(1 + Σ_c |w_rc·X_c| + |b_r|)   (f32 rounding of both paths)
//! ```
//!
//! from `y − ŷ = Σ_c (w_rc − s_r q_rc)·x̂_c + Σ_c w_rc·(X_c − x̂_c)`,
//! `|w − s q| ≤ s/2` and `|X − x̂| ≤ e + h`. The last layer's bound bounds
//! `|μ_int8 − μ_f32|`. All bound arithmetic is f64.

use tinyppo_runtime::kernels;
use tinyppo_runtime::math;
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
            for (i, ((l, ql), y_ref)) in net.layers.iter().zip(&q).zip(&outs).enumerate() {
                let a = x
                    .iter()
                    .zip(&e)
                    .map(|(x, e)| x.abs() + e)
                    .fold(0.0, f64::max);
                let half_sx = if i > 0 && act == Activation::Tanh {
                    1.0 / 254.0 + 1e-7
                } else {
                    a / 254.0
                };
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

/// `T(x)`, the tanh of `docs/FORMAT.md` ("Inference semantics", step 3),
/// from the constants and the order of operations listed there.
fn spec_tanh(x: f32) -> f32 {
    const C: f32 = 7.905311;
    let (a13, a11, a9, a7, a5, a3, a1) = (
        -2.7607685e-16f32,
        2.000188e-13f32,
        -8.604672e-11f32,
        5.122297e-8f32,
        1.4857224e-5f32,
        6.3726193e-4f32,
        4.8935246e-3f32,
    );
    let (b6, b4, b2, b0) = (
        1.1982584e-6f32,
        1.185347e-4f32,
        2.2684346e-3f32,
        4.893525e-3f32,
    );
    let x = x.clamp(-C, C); // −C if x < −C, C if x > C
    let z = x * x;
    let p = ((((((a13 * z + a11) * z + a9) * z + a7) * z + a5) * z + a3) * z + a1) * x;
    let q = ((b6 * z + b4) * z + b2) * z + b0;
    p / q
}

/// `rne(t)`: to the nearest integer, ties to even (through f64, exactly).
fn rne(t: f32) -> i32 {
    (t as f64).round_ties_even() as i32
}

/// The spec's `T_k`, `k = 1…127`, as f32 bits: the smallest f32
/// `≥ atanh((2k − 1)/254)`, from f64 `atanh` (which decides every one of
/// them: the nearest f32 boundary is ≥ 4e-10 away, relatively, checked).
fn tanh_thresholds() -> Vec<u32> {
    (1..=127)
        .map(|k| {
            let a = ((2 * k - 1) as f64 / 254.0).atanh();
            let mut b = (a as f32).to_bits();
            if (f32::from_bits(b) as f64) < a {
                b += 1;
            } else if (f32::from_bits(b - 1) as f64) >= a {
                b -= 1;
            }
            let (lo, hi) = (f32::from_bits(b - 1) as f64, f32::from_bits(b) as f64);
            assert!(lo < a && a <= hi);
            assert!(
                (a - lo).min(hi - a) > 1e-12 * a,
                "T_{k} too close to call in f64"
            );
            b
        })
        .collect()
}

/// `rne(127·tanh(y))` with the exact tanh: `sign(y)·#{k : |y| ≥ T_k}`.
fn spec_tanh_q(y: f32, thresholds: &[u32]) -> i32 {
    let a = y.abs();
    let n = thresholds
        .iter()
        .filter(|&&t| a >= f32::from_bits(t))
        .count() as i32;
    if y < 0.0 {
        -n
    } else {
        n
    }
}

/// The forward pass exactly as `docs/FORMAT.md` ("Inference semantics")
/// specifies it, written naively: f32 layers accumulate `acc = b; acc += w·x`
/// column by column; int8 layers take integer inputs `p` with a scale
/// `s_x` (dynamic: `s_x = amax/127`, `p = rne(x·(127/amax))`, zero below
/// 2⁻¹⁰⁰; after tanh: `p = rne(127·tanh(y))` by the thresholds,
/// `s_x = 1/127`), accumulate `Σ q·p` in i32 and compute `acc·(s_r·s_x) + b`.
fn forward_spec(net: &Net, int8: bool, xhat: &[f32]) -> Vec<f32> {
    let q = net.quantized();
    let thresholds = tanh_thresholds();
    let n = net.layers.len();
    let dynamic = |x: &[f32]| -> (Vec<i32>, f32) {
        let amax = x
            .iter()
            .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        if amax < 2f32.powi(-100) {
            (vec![0; x.len()], 0.0)
        } else {
            let inv = 127.0 / amax;
            (x.iter().map(|&v| rne(v * inv)).collect(), amax / 127.0)
        }
    };
    if !int8 {
        let mut x = xhat.to_vec();
        for (i, l) in net.layers.iter().enumerate() {
            let mut y = Vec::with_capacity(l.rows);
            for r in 0..l.rows {
                let mut acc = l.b[r];
                for (c, &xc) in x.iter().enumerate() {
                    acc += l.w[r * l.cols + c] * xc;
                }
                y.push(acc);
            }
            if i + 1 < n {
                for v in &mut y {
                    *v = match net.activation {
                        Activation::Tanh => spec_tanh(*v),
                        Activation::Relu => v.max(0.0),
                    };
                }
            }
            x = y;
        }
        return x;
    }
    let (mut p, mut sx) = dynamic(xhat);
    let mut y = Vec::new();
    for (i, (l, ql)) in net.layers.iter().zip(&q).enumerate() {
        y = (0..l.rows)
            .map(|r| {
                let acc: i32 = (0..l.cols)
                    .map(|c| ql.q[r * l.cols + c] as i32 * p[c])
                    .sum();
                acc as f32 * (ql.s[r] * sx) + l.b[r]
            })
            .collect();
        if i + 1 < n {
            (p, sx) = match net.activation {
                Activation::Tanh => (
                    y.iter().map(|&v| spec_tanh_q(v, &thresholds)).collect(),
                    1.0 / 127.0,
                ),
                Activation::Relu => dynamic(&y.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()),
            };
        }
    }
    y
}

#[test]
fn forward_pass_is_bit_exact_to_the_spec() {
    // Pins the arithmetic (order of accumulation, int8 rounding) that makes
    // a host simulation reproduce a device log bit for bit.
    let mut rng = TestRng::new(77);
    for act in [Activation::Tanh, Activation::Relu] {
        for _ in 0..10 {
            // Widths with and without a multiple-of-8 part and a tail
            // (the int8 kernel's two column paths), rows not a multiple of 4.
            let net = Net::random(&mut rng, 5, 3, &[24, 19, 8], act, (-1.0, 0.0));
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

#[test]
fn tanh_is_the_spec_function() {
    // math::tanh (shared by the trainer and the runtime) is T of the spec,
    // bit for bit; odd, |T| ≤ 1, and within 5e-7 of the exact tanh.
    let mut worst = 0.0f64;
    for i in -400_000..=400_000 {
        let x = i as f32 * 2.5e-5; // [-10, 10]
        let t = math::tanh(x);
        assert_eq!(t.to_bits(), spec_tanh(x).to_bits(), "x = {x}");
        assert_eq!((-t).to_bits(), math::tanh(-x).to_bits(), "odd at {x}");
        assert!(t.abs() <= 1.0);
        worst = worst.max((t as f64 - (x as f64).tanh()).abs());
    }
    for x in [0.0f32, -0.0, 1e-30, 7.905311, 8.0, 100.0, 3e38, f32::MAX] {
        assert_eq!(math::tanh(x).to_bits(), spec_tanh(x).to_bits());
        assert_eq!(math::tanh(-x).to_bits(), (-spec_tanh(x)).to_bits());
        assert!(math::tanh(x).abs() <= 1.0);
    }
    println!("math::tanh: max |T − tanh| on [-10, 10] = {worst:.3e}");
    assert!(worst <= 5e-7, "{worst:e}");
}

#[test]
fn tanh_thresholds_are_the_runtimes_and_round_tanh() {
    // The runtime's table is the spec's T_k, and counting them rounds
    // 127·tanh correctly: p = k exactly on [T_k, T_{k+1}).
    let t = tanh_thresholds();
    assert_eq!(t, kernels::TANH_THRESHOLDS);
    for (k, &b) in (1..).zip(&t) {
        let (below, at) = (f32::from_bits(b - 1) as f64, f32::from_bits(b) as f64);
        assert_eq!((127.0 * below.tanh()).round_ties_even(), (k - 1) as f64);
        assert_eq!((127.0 * at.tanh()).round_ties_even(), k as f64);
    }
}

#[test]
fn tanh_requantization_table_is_exact() {
    // kernels::tanh_q(y) = sign(y)·#{k : |y| ≥ T_k}: at and around every
    // threshold (every f32 within 2¹² of it, both signs), on 2M random
    // f32 of all magnitudes and on special values.
    let thresholds = tanh_thresholds();
    let mut checked = 0u64;
    for &t in &thresholds {
        for bits in t - (1 << 12)..t + (1 << 12) {
            let a = f32::from_bits(bits);
            let want = spec_tanh_q(a, &thresholds);
            assert_eq!(i32::from(kernels::tanh_q(a)), want, "y = {a:e}");
            assert_eq!(i32::from(kernels::tanh_q(-a)), -want, "y = {:e}", -a);
            checked += 2;
        }
    }
    let mut rng = TestRng::new(11);
    for _ in 0..2_000_000 {
        let y = match rng.below(3) {
            0 => rng.uniform(-5.0, 5.0) as f32,
            1 => rng.uniform(-0.05, 0.05) as f32,
            _ => f32::from_bits((rng.f64() * 4_294_967_296.0) as u32 & 0xFF7F_FFFF), // any finite
        };
        assert_eq!(
            i32::from(kernels::tanh_q(y)),
            spec_tanh_q(y, &thresholds),
            "y = {y:e}"
        );
        checked += 1;
    }
    for y in [
        0.0f32,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        3.2,
        4.0,
        256.0,
        1e30,
        f32::MAX,
    ] {
        assert_eq!(i32::from(kernels::tanh_q(y)), spec_tanh_q(y, &thresholds));
        assert_eq!(i32::from(kernels::tanh_q(-y)), spec_tanh_q(-y, &thresholds));
    }
    println!("tanh_q: {checked} inputs checked");
}

#[test]
#[ignore = "exhaustive (2³¹ f32 bit patterns); run with --release -- --ignored"]
fn tanh_requantization_table_is_exact_everywhere() {
    // Every non-negative f32 (and its negation), NaN patterns excluded.
    let thresholds = tanh_thresholds();
    let mut k = 0usize; // #{T ≤ a}, advanced as a grows
    for bits in 0..=f32::MAX.to_bits() {
        while k < 127 && thresholds[k] <= bits {
            k += 1;
        }
        let a = f32::from_bits(bits);
        assert_eq!(i32::from(kernels::tanh_q(a)), k as i32, "y = {a:e}");
        assert_eq!(i32::from(kernels::tanh_q(-a)), -(k as i32), "y = {:e}", -a);
    }
}
