//! Instruction counts on the Cortex-M4F, for `cargo xtask bench-mcu`.
//!
//! Runs under `qemu-system-arm -icount shift=0`, where SysTick advances one
//! tick per 40 instructions (see `tinyppo_firmware::timing`), so every
//! number here is exact and identical between runs. Each measurement times
//! N ≥ 1000 calls in chunks (a chunk stays far below the 2²⁴-tick wrap of
//! SysTick), subtracts the cost of the empty measuring loop and reports
//! instructions per call.
//!
//! Output: one line per result on the semihosting console (QEMU's stderr),
//! tab-separated and parsed by the xtask:
//!
//! ```text
//! act     <name>  <instructions per call>
//! part    <name>  <instructions per call>
//! math    <fn>    <impl>  <range>  <instructions per call>  <max abs err>  <max rel err>
//! info    <key>   <value>
//! ```
//!
//! Accuracy is measured on the device against libm's double-precision
//! functions (`f64` results rounded only for the comparison), over the
//! input ranges the runtime meets: tanh in [−10, 10] (hidden activations),
//! exp in [−20, 2] (`σ = exp(log_std)`), ln in (0, 1] (Box–Muller's `u1`),
//! sqrt in [0, 40] (`−2 ln u1` ≤ 33.3), sin/cos in [0, 2π] (Box–Muller's
//! angle). Relative errors are taken where `|reference| ≥ 1e-3` (sin, cos,
//! tanh and ln cross zero in these ranges, where only absolute error means
//! anything).
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::heprintln;
use tinyppo_firmware::{exit, stack, timing, uart::Uart0, POLICY_BLOB};
use tinyppo_runtime::kernels;
use tinyppo_runtime::plants::{Pendulum, Plant};
use tinyppo_runtime::sim::{run_simulated, SimConfig};
use tinyppo_runtime::{rng, Policy};

mod blobs {
    include!(concat!(env!("OUT_DIR"), "/bench_blobs.rs"));
}

/// Calls per measurement.
const N: usize = 1000;
/// Calls per SysTick reading: ≤ 100 × 400k instructions = 40M, far below
/// one SysTick wrap (2²⁴ ticks = 671M instructions).
const CHUNK: usize = 100;
/// Points per accuracy sweep.
const SWEEP: usize = 20_001;
/// Relative errors only where the reference is at least this large.
const REL_FLOOR: f64 = 1e-3;

/// Ticks to run `f(0..n)` in chunks.
fn ticks(n: usize, f: &mut impl FnMut(usize)) -> u64 {
    let mut total = 0u64;
    let mut i = 0;
    while i < n {
        let k = CHUNK.min(n - i);
        let t0 = timing::now();
        for j in i..i + k {
            f(j);
        }
        let t1 = timing::now();
        total += u64::from(timing::ticks(t0, t1));
        i += k;
    }
    total
}

/// Measures instructions per call of `f`, net of the measuring loop.
struct Meter {
    /// Ticks of the empty loop over `N` calls.
    baseline: u64,
}

impl Meter {
    fn new() -> Meter {
        let baseline = ticks(N, &mut |j| {
            black_box(j);
        });
        Meter { baseline }
    }

    fn per_call(&self, mut f: impl FnMut(usize)) -> u64 {
        let t = ticks(N, &mut f).saturating_sub(self.baseline);
        (t * timing::INSTRUCTIONS_PER_TICK + N as u64 / 2) / N as u64
    }
}

/// `OBS`-dim observations, uniform in `[−scale, scale)`, fixed seed.
fn observations<const OBS: usize, const K: usize>(scale: f32) -> [[f32; OBS]; K] {
    let mut r = rng::seeded(0x0B5);
    let mut out = [[0.0; OBS]; K];
    for o in out.iter_mut().flatten() {
        *o = rng::uniform(&mut r, -scale, scale);
    }
    out
}

fn bench_act<const OBS: usize, const ACT: usize, const HID: usize>(
    meter: &Meter,
    name: &str,
    blob: &[u8],
    scale: f32,
) {
    let policy = match Policy::<OBS, ACT, HID>::from_bytes(blob) {
        Ok(p) => p,
        Err(e) => exit::failure(format_args!("bench blob {name}: {e}")),
    };
    let obs: [[f32; OBS]; 16] = observations(scale);
    let mut r = rng::seeded(3);
    let n = meter.per_call(|j| {
        black_box(policy.act(black_box(&obs[j % 16]), &mut r).ok());
    });
    heprintln!("act\t{}\t{}", name, n);
    let n = meter.per_call(|j| {
        black_box(policy.mean(black_box(&obs[j % 16])).ok());
    });
    heprintln!("part\t{} mean()\t{}", name, n);
}

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        exit::failure(format_args!("core peripherals taken twice"))
    };
    timing::start(&mut cp.SYST, timing::MAX_RELOAD);
    let meter = Meter::new();
    heprintln!("info\tN\t{}", N);
    heprintln!("info\tbaseline loop ticks\t{}", meter.baseline);

    bench_act::<3, 1, 64>(&meter, "3-64-64-1 f32", blobs::SMALL_F32, 1.5);
    bench_act::<3, 1, 64>(&meter, "3-64-64-1 int8", blobs::SMALL_INT8, 1.5);
    bench_act::<32, 8, 256>(&meter, "32-256-256-8 f32", blobs::LARGE_F32, 2.0);
    bench_act::<32, 8, 256>(&meter, "32-256-256-8 int8", blobs::LARGE_INT8, 2.0);

    parts(&meter);
    control_tick(&meter);
    math::all(&meter);

    let hw = stack::high_water();
    heprintln!("info\tbench stack high-water bytes\t{}", hw.bytes);
    exit::success()
}

/// Where the time of the int8 3-64-64-1 `act()` goes, and the SMLAD
/// prototype of the 64×64 layer.
fn parts(meter: &Meter) {
    let Ok(blob) = tinyppo_runtime::Blob::parse(blobs::SMALL_INT8) else {
        exit::failure(format_args!("bench blob small int8"))
    };
    let Some(layer) = blob.layers().nth(1) else {
        exit::failure(format_args!("bench blob has no second layer"))
    };
    let x: [[f32; 64]; 4] = observations(0.9);
    let seed_only = meter.per_call(|j| {
        black_box(rng::seeded(j as u64));
    });
    let mut q = [0i8; 64];
    let mut y = [0.0f32; 64];

    let n = meter.per_call(|j| {
        black_box(kernels::quantize_input(black_box(&x[j % 4]), &mut q));
    });
    heprintln!("part\tquantize_input (64)\t{}", n);
    let s_x = kernels::quantize_input(&x[0], &mut q);
    let n = meter.per_call(|_| {
        kernels::dense_i8(
            layer.weights,
            layer.scales,
            layer.bias,
            black_box(&q),
            s_x,
            &mut y,
        );
        black_box(&y);
    });
    heprintln!("part\tdense_i8 64x64 (runtime)\t{}", n);
    let reference = y;

    let mut packed = [0u32; 32];
    let n = meter.per_call(|_| {
        smlad::pack(black_box(&q), &mut packed);
        smlad::dense_i8(
            layer.weights,
            layer.scales,
            layer.bias,
            &packed,
            s_x,
            &mut y,
        );
        black_box(&y);
    });
    let same = y == reference;
    heprintln!(
        "part\tdense_i8 64x64 (SMLAD prototype, incl. packing)\t{}",
        n
    );
    heprintln!(
        "info\tSMLAD prototype bit-identical to runtime kernel\t{}",
        same
    );
    let n = meter.per_call(|_| {
        smlad::pack(black_box(&q), &mut packed);
        smlad::dense_i8_x2(
            layer.weights,
            layer.scales,
            layer.bias,
            &packed,
            s_x,
            &mut y,
        );
        black_box(&y);
    });
    heprintln!(
        "part\tdense_i8 64x64 (SMLAD 2-row prototype, incl. packing)\t{}",
        n
    );
    heprintln!(
        "info\tSMLAD 2-row prototype bit-identical to runtime kernel\t{}",
        y == reference
    );
    let n = meter.per_call(|_| {
        smlad::pack(black_box(&q), &mut packed);
        smlad::dense_i8_x4(
            layer.weights,
            layer.scales,
            layer.bias,
            &packed,
            s_x,
            &mut y,
        );
        black_box(&y);
    });
    heprintln!(
        "part\tdense_i8 64x64 (SMLAD 4-row prototype, incl. packing)\t{}",
        n
    );
    heprintln!(
        "info\tSMLAD 4-row prototype bit-identical to runtime kernel\t{}",
        y == reference
    );
    let n = meter.per_call(|j| {
        let mut q = [0i8; 64];
        black_box(proto::quantize_pack(
            black_box(&x[j % 4]),
            &mut q,
            &mut packed,
        ));
    });
    heprintln!("part\tquantize_input + pack (64, prototype)\t{}", n);

    let Ok(policy) = Policy::<3, 1, 64>::from_bytes(blobs::SMALL_INT8) else {
        exit::failure(format_args!("bench blob small int8"))
    };
    let net = proto::Net::new(&blob);
    let obs: [[f32; 3]; 16] = observations(1.5);
    let mut identical = true;
    for o in &obs {
        identical &= policy.mean(o).ok() == Some([net.mean(o, libm::tanhf)]);
    }
    let n = meter.per_call(|j| {
        black_box(net.mean(black_box(&obs[j % 16]), libm::tanhf));
    });
    heprintln!(
        "part\t3-64-64-1 int8 mean() prototype: SMLAD 2-row, libm tanhf\t{}",
        n
    );
    heprintln!(
        "info\tprototype mean() with libm tanhf bit-identical to Policy::mean\t{}",
        identical
    );
    let n = meter.per_call(|j| {
        black_box(net.mean(black_box(&obs[j % 16]), proto::tanh_rational));
    });
    let mut worst = 0.0f32;
    for o in &obs {
        if let Ok([m]) = policy.mean(o) {
            worst = worst.max(libm::fabsf(m - net.mean(o, proto::tanh_rational)));
        }
    }
    heprintln!(
        "part\t3-64-64-1 int8 mean() prototype: SMLAD 2-row, rational tanh\t{}",
        n
    );
    heprintln!(
        "info\tprototype mean() with rational tanh: max |diff| to Policy::mean\t{:.3e}",
        worst
    );
    let n = meter.per_call(|j| {
        black_box(net.mean(black_box(&obs[j % 16]), |v: f32| v.max(0.0)));
    });
    heprintln!(
        "part\t3-64-64-1 int8 mean() prototype: SMLAD 2-row, relu (cost only)\t{}",
        n
    );
    let n = meter.per_call(|j| {
        let mut r = rng::seeded(j as u64);
        black_box(proto::normal_f32(&mut r));
    });
    heprintln!(
        "part\tone normal sample, f32 sincos prototype\t{}",
        n.saturating_sub(seed_only)
    );

    let n = meter.per_call(|j| {
        let mut v = x[j % 4];
        v.iter_mut().for_each(|a| *a = libm::tanhf(*a));
        black_box(&v);
    });
    heprintln!("part\ttanhf x64 (libm)\t{}", n);
    let n = meter.per_call(|j| {
        let mut z = [0.0f32; 1];
        let mut r = rng::seeded(j as u64);
        tinyppo_runtime::gaussian::standard_normals(&mut r, &mut z);
        black_box(z);
    });
    heprintln!(
        "part\tstandard_normals (1 sample)\t{}",
        n.saturating_sub(seed_only)
    );
}

/// One control tick of the firmware: `act()` on the pendulum policy plus
/// one plant step (the simulated stand-in for sensors and actuator).
fn control_tick(meter: &Meter) {
    let Ok(policy) = Policy::<3, 1, 64>::from_bytes(POLICY_BLOB) else {
        exit::failure(format_args!("embedded policy refused"))
    };
    let mut plant = Pendulum::new();
    let mut r = rng::seeded(1);
    let mut obs = plant.reset(&mut r);
    let n = meter.per_call(|_| {
        let applied = match policy.act(&obs, &mut r) {
            Ok(s) => s.applied,
            Err(_) => policy.safe_action(),
        };
        let t = plant.step(&applied);
        obs = if t.truncated || t.terminated {
            plant.reset(&mut r)
        } else {
            t.obs
        };
    });
    heprintln!(
        "act\tcontrol tick: pendulum act + plant step, no log\t{}",
        n
    );

    // The firmware's whole loop: `sim::run_simulated` over 5 episodes
    // (1000 ticks) with the log frames written to UART0 (QEMU discards
    // them here), timed as one run (≈ 60M instructions, below one wrap).
    let Some(mut uart) = Uart0::take() else {
        exit::failure(format_args!("UART0 taken twice"))
    };
    let cfg = SimConfig {
        episodes: 5,
        seed: 1,
        deterministic: false,
    };
    let t0 = timing::now();
    let stats = run_simulated::<_, 3, 1, 64, 4>(&policy, &mut Pendulum::new(), 0, &cfg, &mut |f| {
        uart.write_all(f)
    });
    let t1 = timing::now();
    let per_tick = u64::from(timing::ticks(t0, t1)) * timing::INSTRUCTIONS_PER_TICK
        / u64::from(stats.transitions.max(1));
    heprintln!(
        "act\tcontrol tick: run_simulated incl. logging to UART0 ({} ticks, {} B/tick)\t{}",
        stats.transitions,
        stats.bytes / stats.transitions.max(1),
        per_tick
    );
}

mod smlad {
    //! Prototype: the int8 dot product with the Cortex-M4 DSP instructions
    //! (what CMSIS-NN's `arm_nn_mat_mult` does). The input is packed once
    //! per layer into i16 pairs `(x0, x2), (x1, x3)` per 4 inputs; each
    //! 32-bit weight word is split by `SXTB16` (bytes 0, 2) and
    //! `SXTB16 …, ROR #8` (bytes 1, 3), and `SMLAD` adds two products to
    //! the i32 accumulator: 4 MACs in 2 loads + 4 DSP instructions. The
    //! sums are exact, so the layer output is bit-identical to the
    //! runtime's `kernels::dense_i8`.
    use tinyppo_runtime::format::f32s;

    /// Packs `q` (length a multiple of 4) into i16 pairs.
    pub fn pack(q: &[i8], out: &mut [u32]) {
        for (c, o) in q.chunks_exact(4).zip(out.chunks_exact_mut(2)) {
            let h = |v: i8| u32::from(v as i16 as u16);
            o[0] = h(c[0]) | (h(c[2]) << 16);
            o[1] = h(c[1]) | (h(c[3]) << 16);
        }
    }

    #[inline(always)]
    fn mac4(acc: i32, w: u32, x02: u32, x13: u32) -> i32 {
        let out: i32;
        // SAFETY: register-only DSP instructions of ARMv7E-M (the target's
        // baseline): no memory access, no flags.
        unsafe {
            core::arch::asm!(
                "sxtb16 {a}, {w}",
                "sxtb16 {b}, {w}, ror #8",
                "smlad {acc}, {a}, {x02}, {acc}",
                "smlad {acc}, {b}, {x13}, {acc}",
                w = in(reg) w,
                x02 = in(reg) x02,
                x13 = in(reg) x13,
                a = out(reg) _,
                b = out(reg) _,
                acc = inout(reg) acc => out,
                options(pure, nomem, nostack),
            );
        }
        out
    }

    #[inline(always)]
    fn word(w: &[u8]) -> u32 {
        u32::from_le_bytes([w[0], w[1], w[2], w[3]])
    }

    /// `y = W x + b` like `kernels::dense_i8`, one row at a time; `cols`
    /// must be a multiple of 4 (the prototype skips the tail).
    pub fn dense_i8(
        weights: &[u8],
        scales: &[u8],
        bias: &[u8],
        packed: &[u32],
        s_x: f32,
        y: &mut [f32],
    ) {
        let cols = packed.len() * 2;
        for (((out, row), s), b) in y
            .iter_mut()
            .zip(weights.chunks_exact(cols))
            .zip(f32s(scales))
            .zip(f32s(bias))
        {
            let mut acc = 0i32;
            for (w, x) in row.chunks_exact(4).zip(packed.chunks_exact(2)) {
                acc = mac4(acc, word(w), x[0], x[1]);
            }
            *out = acc as f32 * (s * s_x) + b;
        }
    }

    /// Four rows per pass (rows must be a multiple of 4): each packed
    /// input pair is loaded once for four rows.
    pub fn dense_i8_x4(
        weights: &[u8],
        scales: &[u8],
        bias: &[u8],
        packed: &[u32],
        s_x: f32,
        y: &mut [f32],
    ) {
        let cols = packed.len() * 2;
        for (r4, (outs, rows)) in y
            .chunks_exact_mut(4)
            .zip(weights.chunks_exact(4 * cols))
            .enumerate()
        {
            let (r0, rest) = rows.split_at(cols);
            let (r1, rest) = rest.split_at(cols);
            let (r2, r3) = rest.split_at(cols);
            let mut acc = [0i32; 4];
            for ((((w0, w1), w2), w3), x) in r0
                .chunks_exact(4)
                .zip(r1.chunks_exact(4))
                .zip(r2.chunks_exact(4))
                .zip(r3.chunks_exact(4))
                .zip(packed.chunks_exact(2))
            {
                acc[0] = mac4(acc[0], word(w0), x[0], x[1]);
                acc[1] = mac4(acc[1], word(w1), x[0], x[1]);
                acc[2] = mac4(acc[2], word(w2), x[0], x[1]);
                acc[3] = mac4(acc[3], word(w3), x[0], x[1]);
            }
            for (i, (o, a)) in outs.iter_mut().zip(acc).enumerate() {
                let r = 4 * r4 + i;
                *o = a as f32 * (f32_at(scales, r) * s_x) + f32_at(bias, r);
            }
        }
    }

    /// The `i`-th little-endian f32 of `bytes` (0.0 past the end).
    #[inline(always)]
    pub fn f32_at(bytes: &[u8], i: usize) -> f32 {
        match bytes.get(4 * i..4 * i + 4) {
            Some(c) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            None => 0.0,
        }
    }

    /// Two rows per pass: each packed input word is loaded once for both.
    pub fn dense_i8_x2(
        weights: &[u8],
        scales: &[u8],
        bias: &[u8],
        packed: &[u32],
        s_x: f32,
        y: &mut [f32],
    ) {
        let cols = packed.len() * 2;
        let mut sc = f32s(scales);
        let mut bs = f32s(bias);
        for (outs, rows) in y.chunks_exact_mut(2).zip(weights.chunks_exact(2 * cols)) {
            let (r0, r1) = rows.split_at(cols);
            let (mut a0, mut a1) = (0i32, 0i32);
            for ((w0, w1), x) in r0
                .chunks_exact(4)
                .zip(r1.chunks_exact(4))
                .zip(packed.chunks_exact(2))
            {
                a0 = mac4(a0, word(w0), x[0], x[1]);
                a1 = mac4(a1, word(w1), x[0], x[1]);
            }
            for (o, a) in outs.iter_mut().zip([a0, a1]) {
                let (s, b) = (sc.next().unwrap_or(0.0), bs.next().unwrap_or(0.0));
                *o = a as f32 * (s * s_x) + b;
            }
        }
    }
}

mod proto {
    //! Prototype of a faster int8 forward pass for a tanh MLP with two
    //! hidden layers, computing exactly what `Policy::mean` computes (same
    //! normalization, same input quantization, exact i32 sums, same f32
    //! rescaling), with three changes: scales and biases read by index (no
    //! iterator chain per row), quantization fused with the packing into
    //! i16 pairs, and the 2-row SMLAD kernel (the 4-row one runs out of registers). With `libm::tanhf` it is
    //! bit-identical to `Policy::mean` (checked at run time).
    use super::smlad::{self, f32_at};
    use tinyppo_runtime::format::f32s;
    use tinyppo_runtime::{Blob, Layer};

    pub struct Net<'a> {
        layers: [Layer<'a>; 3],
        mean: [f32; 3],
        inv_std: [f32; 3],
        clip: f32,
    }

    impl<'a> Net<'a> {
        pub fn new(blob: &Blob<'a>) -> Net<'a> {
            let mut it = blob.layers();
            let (Some(l0), Some(l1), Some(l2)) = (it.next(), it.next(), it.next()) else {
                super::exit::failure(format_args!("prototype wants 3 layers"))
            };
            let mut mean = [0.0; 3];
            let mut inv_std = [0.0; 3];
            mean.iter_mut()
                .zip(f32s(blob.obs_mean))
                .for_each(|(o, v)| *o = v);
            inv_std
                .iter_mut()
                .zip(f32s(blob.obs_inv_std))
                .for_each(|(o, v)| *o = v);
            Net {
                layers: [l0, l1, l2],
                mean,
                inv_std,
                clip: blob.obs_clip,
            }
        }

        /// `μ(x)` of a 3-64-64-1 policy.
        pub fn mean(&self, obs: &[f32; 3], tanh: impl Fn(f32) -> f32) -> f32 {
            let mut x = [0.0f32; 3];
            for i in 0..3 {
                let v = (obs[i] - self.mean[i]) * self.inv_std[i];
                x[i] = if v < -self.clip {
                    -self.clip
                } else if v > self.clip {
                    self.clip
                } else {
                    v
                };
            }
            // Layer 1: 3 inputs, plain Rust.
            let mut q3 = [0i8; 3];
            let s_x = tinyppo_runtime::kernels::quantize_input(&x, &mut q3);
            let l = &self.layers[0];
            let mut h = [0.0f32; 64];
            for (r, (o, w)) in h.iter_mut().zip(l.weights.chunks_exact(3)).enumerate() {
                let acc = (w[0] as i8 as i32) * (q3[0] as i32)
                    + (w[1] as i8 as i32) * (q3[1] as i32)
                    + (w[2] as i8 as i32) * (q3[2] as i32);
                *o = tanh(acc as f32 * (f32_at(l.scales, r) * s_x) + f32_at(l.bias, r));
            }
            // Layer 2: 64 -> 64.
            let mut q = [0i8; 64];
            let mut packed = [0u32; 32];
            let s_x = quantize_pack(&h, &mut q, &mut packed);
            let l = &self.layers[1];
            let mut h2 = [0.0f32; 64];
            smlad::dense_i8_x2(l.weights, l.scales, l.bias, &packed, s_x, &mut h2);
            h2.iter_mut().for_each(|v| *v = tanh(*v));
            // Head: 64 -> 1.
            let s_x = quantize_pack(&h2, &mut q, &mut packed);
            let l = &self.layers[2];
            let mut out = [0.0f32; 1];
            smlad::dense_i8(l.weights, l.scales, l.bias, &packed, s_x, &mut out);
            out[0]
        }
    }

    /// `kernels::quantize_input` fused with the i16-pair packing of
    /// `smlad::pack`; same arithmetic, so the same `q` and `s_x`.
    #[inline(always)]
    pub fn quantize_pack(x: &[f32], q: &mut [i8], packed: &mut [u32]) -> f32 {
        let mut amax = 0.0f32;
        for &v in x {
            let a = libm::fabsf(v);
            if a > amax {
                amax = a;
            }
        }
        if amax == 0.0 {
            q.iter_mut().for_each(|v| *v = 0);
            packed.iter_mut().for_each(|v| *v = 0);
            return 0.0;
        }
        let inv = 127.0 / amax;
        // |t| ≤ 127·(1 + 2⁻²³)² < 127.5, so the truncation is already in
        // [−127, 127]: the runtime's clamp never acts and is left out.
        let qz = |v: f32| -> i32 {
            let t = v * inv;
            let r = if t >= 0.0 { t + 0.5 } else { t - 0.5 };
            r as i32
        };
        for (c, o) in x.chunks_exact(4).zip(packed.chunks_exact_mut(2)) {
            let (a, b, d, e) = (qz(c[0]), qz(c[1]), qz(c[2]), qz(c[3]));
            o[0] = (a as u32 & 0xFFFF) | ((d as u32) << 16);
            o[1] = (b as u32 & 0xFFFF) | ((e as u32) << 16);
        }
        amax / 127.0
    }

    /// tanh as a [13/6] rational function in f32 (Eigen's
    /// `generic_fast_tanh_float` coefficients), input clamped to ±9.
    /// Plain f32 multiply-adds: the same bits on the host and the device.
    #[inline(always)]
    pub fn tanh_rational(x: f32) -> f32 {
        let x = x.clamp(-9.0, 9.0);
        let x2 = x * x;
        let mut p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
        p = x2 * p + -8.604_672e-11;
        p = x2 * p + 5.122_297e-8;
        p = x2 * p + 1.485_722_4e-5;
        p = x2 * p + 6.372_619_3e-4;
        p = x2 * p + 4.893_524_6e-3;
        p *= x;
        let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
        q = x2 * q + 2.268_434_6e-3;
        q = x2 * q + 4.893_525e-3;
        (p / q).clamp(-1.0, 1.0)
    }

    /// `(sin x, cos x)` for `x` in `[0, 2π]` in f32 only (Cephes `sinf`/
    /// `cosf`: octant reduction with a 3-part π/4, degree-7/8 polynomials),
    /// instead of libm's f32 functions, whose kernels evaluate in f64
    /// (soft-float on a Cortex-M4F).
    pub fn sincos_f32(x: f32) -> (f32, f32) {
        const FOPI: f32 = 1.273_239_5; // 4/π
        const DP1: f32 = 0.785_156_25;
        const DP2: f32 = 2.418_756_5e-4;
        const DP3: f32 = 3.774_895e-8;
        let mut j = (x * FOPI) as i32;
        let mut y = j as f32;
        if j & 1 == 1 {
            j += 1;
            y += 1.0;
        }
        let j = j & 7;
        let r = ((x - y * DP1) - y * DP2) - y * DP3;
        let z = r * r;
        let s = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * r + r;
        let c =
            ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
        match j {
            0 => (s, c),
            2 => (c, -s),
            4 => (-s, -c),
            _ => (-c, s),
        }
    }

    /// One standard normal by Box–Muller like `gaussian::standard_normals`
    /// (same uniforms, libm `logf`/`sqrtf`), with [`sincos_f32`].
    pub fn normal_f32<R: rand_core::RngCore>(rng: &mut R) -> f32 {
        let u1 = ((rng.next_u32() >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0);
        let u2 = (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0);
        let r = libm::sqrtf(-2.0 * libm::logf(u1));
        r * sincos_f32(core::f32::consts::TAU * u2).1
    }
}

mod math {
    //! libm against micromath (and the FPU's `VSQRT`) on the ranges the
    //! runtime uses.
    use super::*;

    struct Range {
        name: &'static str,
        lo: f64,
        hi: f64,
        /// Sample `lo·(hi/lo)^t` instead of linearly (for ln near 0).
        geometric: bool,
    }

    const TANH: Range = Range {
        name: "[-10,10]",
        lo: -10.0,
        hi: 10.0,
        geometric: false,
    };
    const EXP: Range = Range {
        name: "[-20,2]",
        lo: -20.0,
        hi: 2.0,
        geometric: false,
    };
    const LN: Range = Range {
        name: "(0,1]",
        lo: 5.960_464_477_539_063e-8,
        hi: 1.0,
        geometric: true,
    };
    const SQRT: Range = Range {
        name: "[0,40]",
        lo: 0.0,
        hi: 40.0,
        geometric: false,
    };
    const TRIG: Range = Range {
        name: "[0,2pi]",
        lo: 0.0,
        hi: core::f64::consts::TAU,
        geometric: false,
    };

    fn point(r: &Range, i: usize, n: usize) -> f32 {
        let t = i as f64 / (n - 1) as f64;
        let x = if r.geometric {
            r.lo * libm::pow(r.hi / r.lo, t)
        } else {
            r.lo + (r.hi - r.lo) * t
        };
        x as f32
    }

    fn one(
        meter: &Meter,
        func: &str,
        imp: &str,
        range: &Range,
        f: impl Fn(f32) -> f32,
        reference: impl Fn(f64) -> f64,
    ) {
        let mut inputs = [0.0f32; 64];
        for (i, x) in inputs.iter_mut().enumerate() {
            *x = point(range, i, 64);
        }
        let n = meter.per_call(|j| {
            black_box(f(black_box(inputs[j % 64])));
        });
        let (mut abs, mut rel) = (0.0f64, 0.0f64);
        for i in 0..SWEEP {
            let x = point(range, i, SWEEP);
            let want = reference(f64::from(x));
            let got = f64::from(f(x));
            let e = libm::fabs(got - want);
            abs = abs.max(e);
            if libm::fabs(want) >= REL_FLOOR {
                rel = rel.max(e / libm::fabs(want));
            }
        }
        heprintln!(
            "math\t{}\t{}\t{}\t{}\t{:.3e}\t{:.3e}",
            func,
            imp,
            range.name,
            n,
            abs,
            rel
        );
    }

    // `VSQRT.F32` as a leaf function: the hard-float ABI passes and returns
    // the f32 in s0. (Inline `asm!` cannot name `sreg` operands on this
    // target without the unstable `vfp2` target feature.)
    core::arch::global_asm!(
        ".section .text.tinyppo_vsqrt,\"ax\",%progbits",
        ".global tinyppo_vsqrt",
        ".type tinyppo_vsqrt,%function",
        ".thumb_func",
        "tinyppo_vsqrt:",
        "vsqrt.f32 s0, s0",
        "bx lr",
    );
    extern "C" {
        fn tinyppo_vsqrt(x: f32) -> f32;
    }

    fn vsqrt(x: f32) -> f32 {
        // SAFETY: `tinyppo_vsqrt` (above) only reads and writes s0.
        unsafe { tinyppo_vsqrt(x) }
    }

    pub fn all(meter: &Meter) {
        use micromath::F32;
        one(meter, "tanhf", "libm", &TANH, libm::tanhf, libm::tanh);
        one(
            meter,
            "tanhf",
            "1-2/(1+exp 2x), micromath exp",
            &TANH,
            |x| 1.0 - 2.0 / (1.0 + F32(2.0 * x).exp().0),
            libm::tanh,
        );
        one(
            meter,
            "tanhf",
            "rational [13/6] (prototype)",
            &TANH,
            proto::tanh_rational,
            libm::tanh,
        );
        one(meter, "expf", "libm", &EXP, libm::expf, libm::exp);
        one(
            meter,
            "expf",
            "micromath",
            &EXP,
            |x| F32(x).exp().0,
            libm::exp,
        );
        one(meter, "logf", "libm", &LN, libm::logf, libm::log);
        one(
            meter,
            "logf",
            "micromath",
            &LN,
            |x| F32(x).ln().0,
            libm::log,
        );
        one(meter, "sqrtf", "libm", &SQRT, libm::sqrtf, libm::sqrt);
        one(
            meter,
            "sqrtf",
            "micromath",
            &SQRT,
            |x| F32(x).sqrt().0,
            libm::sqrt,
        );
        one(meter, "sqrtf", "vsqrt.f32 (FPU)", &SQRT, vsqrt, libm::sqrt);
        one(meter, "sinf", "libm", &TRIG, libm::sinf, libm::sin);
        one(
            meter,
            "sinf",
            "micromath",
            &TRIG,
            |x| F32(x).sin().0,
            libm::sin,
        );
        one(meter, "cosf", "libm", &TRIG, libm::cosf, libm::cos);
        one(
            meter,
            "cosf",
            "micromath",
            &TRIG,
            |x| F32(x).cos().0,
            libm::cos,
        );
        one(
            meter,
            "sinf",
            "Cephes f32 (prototype)",
            &TRIG,
            |x| proto::sincos_f32(x).0,
            libm::sin,
        );
        one(
            meter,
            "cosf",
            "Cephes f32 (prototype)",
            &TRIG,
            |x| proto::sincos_f32(x).1,
            libm::cos,
        );
        one(
            meter,
            "sincosf",
            "Cephes f32 (prototype, sin+cos)",
            &TRIG,
            |x| {
                let (s, c) = proto::sincos_f32(x);
                s + c
            },
            |x| libm::sin(x) + libm::cos(x),
        );
        one(
            meter,
            "sincosf",
            "libm (sin+cos)",
            &TRIG,
            |x| {
                let (s, c) = libm::sincosf(x);
                s + c
            },
            |x| libm::sin(x) + libm::cos(x),
        );
        // vsqrt is correctly rounded like libm::sqrtf: check bit-identity.
        let mut same = true;
        for i in 0..SWEEP {
            let x = point(&SQRT, i, SWEEP);
            same &= vsqrt(x).to_bits() == libm::sqrtf(x).to_bits();
        }
        heprintln!(
            "info\tvsqrt.f32 bit-identical to libm::sqrtf on [0,40]\t{}",
            same
        );
    }
}
