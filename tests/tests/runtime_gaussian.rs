//! The Gaussian head: `log_prob` and `entropy` against f64 references, and
//! the moments of `act()`'s samples.
//!
//! Reference (`util::log_prob64`, all in f64, μ from an f64 forward pass
//! of the same f32 weights):
//! `log π(u|x) = −Σ_j [ (u_j − μ_j)² / (2σ_j²) + ½ log(2π σ_j²) ]`, `σ_j = exp(log_std_j)`.

use tinyppo_runtime::math;
use tinyppo_runtime::rng;
use tinyppo_runtime::{Activation, Policy};

use crate::util::{entropy64, log_prob64, random_obs, Net, TestRng};

/// Worst errors of `log_prob` over random policies, observations and
/// actions, as `[sampled_abs, far_rel, gaussian_only_rel]`:
/// - `sampled_abs`: |f32 − f64 reference| for actions drawn by `act()`;
/// - `far_rel`: the same divided by max(1, |reference|), for actions
///   `μ + k·σ` with `k` uniform in [−12, 12];
/// - `gaussian_only_rel`: both kinds of action against the f64 formula fed
///   the runtime's own f32 mean, i.e. the error of the Gaussian arithmetic
///   alone (the rest of the first two is the f32 forward pass's error in μ,
///   amplified by |z|/σ).
fn log_prob_errors<const O: usize, const A: usize, const H: usize>(
    rng: &mut TestRng,
    hidden: &[usize],
    log_std: (f64, f64),
) -> [f64; 3] {
    let mut worst = [0.0f64; 3];
    let mut dev = rng::seeded(99);
    for n in 0..40 {
        let act = if n % 2 == 0 {
            Activation::Tanh
        } else {
            Activation::Relu
        };
        let mut net = Net::random(rng, O, A, hidden, act, log_std);
        // A PPO-style small output layer: |μ| stays within a few units, as
        // for a policy whose actions live in its bounds.
        net.layers
            .last_mut()
            .unwrap()
            .w
            .iter_mut()
            .for_each(|w| *w *= 0.25);
        let blob = net.encode_f32();
        let p = Policy::<O, A, H>::from_bytes(&blob).unwrap();
        for _ in 0..50 {
            let obs: [f32; O] = random_obs(rng, 2.0);
            let mu = net.mean64(&obs);
            let mu32: Vec<f64> = p.mean(&obs).unwrap().iter().map(|&m| m as f64).collect();
            let step = p.act(&obs, &mut dev).unwrap();
            let lp = step.log_prob as f64;
            worst[0] = worst[0].max((lp - log_prob64(&step.action, &mu, &net.log_std)).abs());
            let g = log_prob64(&step.action, &mu32, &net.log_std);
            worst[2] = worst[2].max((lp - g).abs() / g.abs().max(1.0));
            let u: [f32; A] = std::array::from_fn(|j| {
                (mu[j] + rng.uniform(-12.0, 12.0) * (net.log_std[j] as f64).exp()) as f32
            });
            let lp = p.log_prob(&obs, &u).unwrap() as f64;
            let r = log_prob64(&u, &mu, &net.log_std);
            worst[1] = worst[1].max((lp - r).abs() / r.abs().max(1.0));
            let g = log_prob64(&u, &mu32, &net.log_std);
            worst[2] = worst[2].max((lp - g).abs() / g.abs().max(1.0));
        }
    }
    worst
}

#[test]
fn log_prob_matches_the_f64_reference() {
    // Tested range: obs ~ N(0, 2²) per element (normalized, clipped to ±5),
    // hidden weights N(0, gain²/fan_in), output weights N(0, 1/16·1/fan_in)
    // (|μ| ≲ 3), log_std ∈ [−1.5, 1], ACT 1–3, hidden 1–2 layers, both
    // activations; 6 000 (policy, obs) pairs.
    // - sampled actions (|z| ≤ 5.8): absolute error ≤ 1e-5;
    // - actions up to 12σ away (log π down to ≈ −220): error ≤ 1e-5·max(1, |log π|)
    //   (f32 cannot hold −220 to 1e-5 absolute: its spacing there is 1.5e-5);
    // - Gaussian arithmetic alone: ≤ 1e-6·max(1, |log π|).
    let mut rng = TestRng::new(2024);
    let mut worst = [0.0f64; 3];
    for w in [
        log_prob_errors::<3, 1, 16>(&mut rng, &[16], (-1.5, 1.0)),
        log_prob_errors::<4, 2, 16>(&mut rng, &[16, 16], (-1.5, 1.0)),
        log_prob_errors::<5, 3, 32>(&mut rng, &[32, 8], (-1.5, 1.0)),
    ] {
        for (a, b) in worst.iter_mut().zip(w) {
            *a = a.max(b);
        }
    }
    println!(
        "log_prob: worst abs error (sampled) {:.2e}, worst rel error (far) {:.2e}, gaussian alone {:.2e}",
        worst[0], worst[1], worst[2]
    );
    assert!(worst[0] <= 1e-5, "sampled actions: {:e}", worst[0]);
    assert!(worst[1] <= 1e-5, "far actions: {:e}", worst[1]);
    assert!(worst[2] <= 1e-6, "gaussian arithmetic: {:e}", worst[2]);
}

#[test]
fn log_prob_of_int8_policies_uses_their_own_mean() {
    // For int8 weights, μ is the runtime's (quantized) mean; the Gaussian
    // part must still match the f64 formula.
    let mut rng = TestRng::new(7);
    let mut worst = 0.0f64;
    for _ in 0..20 {
        let net = Net::random(&mut rng, 3, 2, &[16, 16], Activation::Tanh, (-1.5, 1.0));
        let blob = net.encode_int8();
        let p = Policy::<3, 2, 16>::from_bytes(&blob).unwrap();
        let mut dev = rng::seeded(3);
        for _ in 0..50 {
            let obs: [f32; 3] = random_obs(&mut rng, 2.0);
            let mu: Vec<f64> = p.mean(&obs).unwrap().iter().map(|&m| m as f64).collect();
            let step = p.act(&obs, &mut dev).unwrap();
            worst = worst
                .max((step.log_prob as f64 - log_prob64(&step.action, &mu, &net.log_std)).abs());
        }
    }
    assert!(worst <= 1e-5, "{worst:e}");
}

#[test]
fn entropy_matches_the_f64_formula() {
    // H = Σ_j (log σ_j + ½(1 + log 2π)), log_std over the whole valid range.
    let mut rng = TestRng::new(8);
    for act_dim in [1usize, 2, 3, 8] {
        for _ in 0..50 {
            let net = Net::random(&mut rng, 2, act_dim, &[4], Activation::Relu, (-20.0, 10.0));
            let blob = net.encode_f32();
            let h = match act_dim {
                1 => Policy::<2, 1, 4>::from_bytes(&blob).unwrap().entropy(),
                2 => Policy::<2, 2, 4>::from_bytes(&blob).unwrap().entropy(),
                3 => Policy::<2, 3, 4>::from_bytes(&blob).unwrap().entropy(),
                _ => Policy::<2, 8, 4>::from_bytes(&blob).unwrap().entropy(),
            };
            let want = entropy64(&net.log_std);
            assert!(
                (h as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{h} vs {want}"
            );
        }
    }
}

/// Draws `N` samples of `act()` at a fixed observation and checks, per
/// dimension, the sample mean and variance of the unclipped action, the
/// clipping and the returned log-probability.
///
/// Tolerances (4 standard errors; the seed is fixed, so the test is
/// deterministic): mean `|x̄ − μ| ≤ 4σ/√N`; variance
/// `|s² − σ²| ≤ 4·σ²·√(2/N)`, from `Var(s²) = 2σ⁴/(N − 1)` for normal
/// samples (with N = 200 000, √(2/(N−1)) and √(2/N) agree to 3e-6 relative).
/// Cross-covariance of dimensions 0 and 1 (the cosine and sine of one
/// Box–Muller pair): `|ĉ| ≤ 4σ₀σ₁/√N`.
fn check_sampling<const O: usize, const A: usize, const H: usize>(seed: u64) {
    const N: usize = 200_000;
    let mut rng = TestRng::new(seed);
    let mut net = Net::random(&mut rng, O, A, &[8, 8], Activation::Tanh, (-1.0, 0.5));
    let obs: [f32; O] = random_obs(&mut rng, 1.0);
    // Bounds inside the distribution, so clipping happens on both sides.
    let mu0 = net.mean64(&obs);
    for (j, &m) in mu0.iter().enumerate() {
        let s = (net.log_std[j] as f64).exp();
        net.low[j] = (m - 1.5 * s) as f32;
        net.high[j] = (m + 1.0 * s) as f32;
    }
    let blob = net.encode_f32();
    let p = Policy::<O, A, H>::from_bytes(&blob).unwrap();
    let mu = p.mean(&obs).unwrap();
    let sigma: [f64; A] = std::array::from_fn(|j| (p.log_std()[j] as f64).exp());
    let mut dev = rng::seeded(seed ^ 0xDEAD);
    let (mut sum, mut sq) = ([0.0f64; A], [0.0f64; A]);
    let mut cross = 0.0f64;
    let mut clipped = (0usize, 0usize);
    for _ in 0..N {
        let step = p.act(&obs, &mut dev).unwrap();
        for j in 0..A {
            let d = step.action[j] as f64 - mu[j] as f64;
            sum[j] += d;
            sq[j] += d * d;
            let want = step.action[j].clamp(p.action_low()[j], p.action_high()[j]);
            assert_eq!(step.applied[j].to_bits(), want.to_bits());
            clipped.0 += (step.applied[j] == p.action_low()[j]) as usize;
            clipped.1 += (step.applied[j] == p.action_high()[j]) as usize;
        }
        if A >= 2 {
            cross +=
                (step.action[0] as f64 - mu[0] as f64) * (step.action[1] as f64 - mu[1] as f64);
        }
        let lp = p.log_prob(&obs, &step.action).unwrap();
        assert_eq!(
            step.log_prob.to_bits(),
            lp.to_bits(),
            "log_prob must be bit-exact"
        );
    }
    let n = N as f64;
    for j in 0..A {
        let mean = sum[j] / n; // offset from μ
        let var = (sq[j] - sum[j] * sum[j] / n) / (n - 1.0);
        let s2 = sigma[j] * sigma[j];
        println!(
            "ACT={A} dim {j}: mean−μ = {mean:+.2e} (tol {:.2e}), var/σ² − 1 = {:+.2e} (tol {:.2e})",
            4.0 * sigma[j] / n.sqrt(),
            var / s2 - 1.0,
            4.0 * (2.0 / n).sqrt()
        );
        assert!(
            mean.abs() <= 4.0 * sigma[j] / n.sqrt(),
            "dim {j}: mean off by {mean}"
        );
        assert!(
            (var - s2).abs() <= 4.0 * s2 * (2.0 / n).sqrt(),
            "dim {j}: var {var} vs {s2}"
        );
    }
    if A >= 2 {
        let c = cross / n;
        assert!(
            c.abs() <= 4.0 * sigma[0] * sigma[1] / n.sqrt(),
            "cov(0, 1) = {c}"
        );
    }
    // Both bounds were hit a fair share of the time (≈ 6.7% and 16%).
    assert!(clipped.0 > N / 50 && clipped.1 > N / 50, "{clipped:?}");
}

#[test]
fn sampling_moments_act1() {
    // One dimension: the odd (cosine-only) Box–Muller branch.
    check_sampling::<3, 1, 8>(1);
}

#[test]
fn sampling_moments_act2() {
    // One full pair: cosine and sine branches.
    check_sampling::<3, 2, 8>(2);
}

#[test]
fn sampling_moments_act3() {
    // A pair and an odd last element.
    check_sampling::<3, 3, 8>(3);
}

#[test]
fn act_is_reproducible_from_the_seed() {
    let net = Net::random(
        &mut TestRng::new(4),
        3,
        3,
        &[8],
        Activation::Relu,
        (-1.0, 0.0),
    );
    let blob = net.encode_int8();
    let p = Policy::<3, 3, 8>::from_bytes(&blob).unwrap();
    let (mut a, mut b) = (rng::seeded(42), rng::seeded(42));
    for _ in 0..100 {
        assert_eq!(
            p.act(&[0.1, 0.2, 0.3], &mut a),
            p.act(&[0.1, 0.2, 0.3], &mut b)
        );
    }
}

/// `S(k) = (sin θ, cos θ)` of `θ = 2π·k·2⁻²⁴` exactly as `docs/FORMAT.md`
/// ("Inference semantics", step 4) specifies it: exact quadrant reduction
/// in integers, then Cephes' f32 kernels on `φ ∈ [−π/4, π/4]`.
fn spec_sincos(k: u32) -> (f32, f32) {
    let n = (k + (1 << 21)) >> 22;
    let d = k as i64 - ((n as i64) << 22);
    let delta = std::f32::consts::TAU / 16_777_216.0;
    let phi = d as f32 * delta;
    let z = phi * phi;
    let (s1, s2, s3) = (-1.6666655e-1f32, 8.332161e-3f32, -1.9515296e-4f32);
    let (c1, c2, c3) = (4.1666646e-2f32, -1.3887316e-3f32, 2.4433157e-5f32);
    let s = phi + (phi * z) * ((s3 * z + s2) * z + s1);
    let c = (1.0 - 0.5 * z) + (z * z) * ((c3 * z + c2) * z + c1);
    match n % 4 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// `u = μ + σ·z` with `z` from the Box–Muller transform exactly as
/// `docs/FORMAT.md` specifies it: per pair of dimensions two `u32` draws
/// `a`, `b`; `u1 = ((a >> 8) + 1)·2⁻²⁴`, `r = √(−2 ln u1)` (`logf`, IEEE
/// square root), `(sin θ, cos θ) = S(b >> 8)`,
/// `(z_j, z_{j+1}) = (r cos θ, r sin θ)`; an odd last dimension draws a
/// pair too and uses `r cos θ`.
fn act_spec<const A: usize>(
    mu: &[f32; A],
    log_std: &[f32; A],
    r: &mut rng::DefaultRng,
) -> [f32; A] {
    let mut z = [0.0f32; A];
    let mut j = 0;
    while j < A {
        // uniform01 is (next_u32 >> 8)·2⁻²⁴; adding 2⁻²⁴ is exact.
        let u1 = rng::uniform01(r) + 1.0 / 16_777_216.0;
        let k = (rng::uniform01(r) * 16_777_216.0) as u32; // b >> 8
        let rad = (-2.0 * libm::logf(u1)).sqrt();
        let (sin, cos) = spec_sincos(k);
        z[j] = rad * cos;
        if j + 1 < A {
            z[j + 1] = rad * sin;
        }
        j += 2;
    }
    std::array::from_fn(|j| mu[j] + libm::expf(log_std[j]) * z[j])
}

#[test]
fn sincos_turns_over_all_angles() {
    // math::sincos_turns is S of the spec at every one of the 2²⁴ angles
    // Box–Muller can draw, and its error against the f64 sine and cosine
    // of the exact angle 2π·k·2⁻²⁴ is at most 1.2e-7 (printed: the worst).
    let (mut ws, mut wc, mut wn) = (0.0f64, 0.0f64, 0.0f64);
    for k in 0..1u32 << 24 {
        let (s, c) = math::sincos_turns(k);
        if k % 64 == 0 {
            let (ss, sc) = spec_sincos(k);
            assert_eq!(
                (s.to_bits(), c.to_bits()),
                (ss.to_bits(), sc.to_bits()),
                "k = {k}"
            );
        }
        let theta = std::f64::consts::TAU * k as f64 / 16_777_216.0;
        ws = ws.max((s as f64 - theta.sin()).abs());
        wc = wc.max((c as f64 - theta.cos()).abs());
        wn = wn.max(((s as f64).hypot(c as f64) - 1.0).abs());
    }
    println!("sincos_turns: max |sin err| {ws:.3e}, |cos err| {wc:.3e}, |r − 1| {wn:.3e}");
    assert!(ws <= 1.2e-7 && wc <= 1.2e-7, "{ws:e} {wc:e}");
    assert_eq!(math::sincos_turns(0), (0.0, 1.0));
    assert_eq!(math::sincos_turns(1 << 22).0, 1.0); // θ = π/2
}

#[test]
fn sqrt_is_ieee() {
    // math::sqrt (VSQRT on the device) is the correctly rounded square root.
    let mut x = 0.0f32;
    while x < 40.0 {
        assert_eq!(math::sqrt(x).to_bits(), x.sqrt().to_bits());
        assert_eq!(math::sqrt(x).to_bits(), libm::sqrtf(x).to_bits());
        x += 1.7e-4;
    }
}

fn check_act_bits<const A: usize>(seed: u64) {
    let mut rng = TestRng::new(seed);
    let net = Net::random(&mut rng, 2, A, &[6], Activation::Tanh, (-2.0, 1.0));
    let blob = net.encode_int8();
    let p = Policy::<2, A, 6>::from_bytes(&blob).unwrap();
    let mut dev = rng::seeded(seed);
    let mut spec = dev.clone();
    for _ in 0..2000 {
        let obs: [f32; 2] = random_obs(&mut rng, 1.0);
        let mu = p.mean(&obs).unwrap();
        let step = p.act(&obs, &mut dev).unwrap();
        let want = act_spec(&mu, p.log_std(), &mut spec);
        assert_eq!(step.action.map(f32::to_bits), want.map(f32::to_bits));
    }
}

#[test]
fn act_is_bit_exact_to_the_spec() {
    // Pins the RNG consumption (two u32 per pair and per odd last
    // dimension) and the f32 Box–Muller arithmetic, so a host replays a
    // device's samples from its seed.
    check_act_bits::<1>(1);
    check_act_bits::<2>(2);
    check_act_bits::<3>(3);
    check_act_bits::<4>(4);
}
