//! Instruction counts on the Cortex-M4F, for `cargo xtask bench-mcu`.
//!
//! Runs under `qemu-system-arm -icount shift=0`, where SysTick advances one
//! tick per 40 instructions (see `tinyppo_boards::timing`), so every
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
use tinyppo_boards::mps2_an386::{Uart0, INSTRUCTIONS_PER_TICK};
use tinyppo_boards::{exit, stack, timing};
use tinyppo_runtime::kernels::{self, QVec};
use tinyppo_runtime::plants::{Pendulum, Plant};
use tinyppo_runtime::sim::{run_simulated, RunConfig};
use tinyppo_runtime::{rng, Policy};

tinyppo_boards::embed_policy!();

mod blobs {
    include!(concat!(env!("OUT_DIR"), "/bench_blobs.rs"));
    include!(concat!(env!("OUT_DIR"), "/bench_policy_x4.rs"));
}

/// Prints `error: {msg}` and exits with status 1. The bench alone formats
/// with `core::fmt` (its accuracy table prints floats): it measures, it is
/// never flashed, and the size and symbol checks skip it.
fn fail(msg: core::fmt::Arguments) -> ! {
    heprintln!("error: {}", msg);
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    exit::halt()
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
        (t * INSTRUCTIONS_PER_TICK + N as u64 / 2) / N as u64
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
        Err(e) => fail(format_args!("bench blob {name}: {e}")),
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
        fail(format_args!("core peripherals taken twice"))
    };
    timing::start(&mut cp.SYST, timing::MAX_RELOAD);
    let meter = Meter::new();
    heprintln!("info\tN\t{}", N);
    heprintln!("info\tbaseline loop ticks\t{}", meter.baseline);

    bench_act::<3, 1, 64>(&meter, "3-64-64-1 f32", blobs::SMALL_F32, 1.5);
    bench_act::<3, 1, 64>(&meter, "3-64-64-1 int8", blobs::SMALL_INT8, 1.5);
    bench_act::<32, 8, 256>(&meter, "32-256-256-8 f32", blobs::LARGE_F32, 2.0);
    bench_act::<32, 8, 256>(&meter, "32-256-256-8 int8", blobs::LARGE_INT8, 2.0);
    bench_act::<3, 1, 64>(&meter, "3-64-64-1 int8x4", blobs::SMALL_INT8X4, 1.5);
    bench_act::<32, 8, 256>(&meter, "32-256-256-8 int8x4", blobs::LARGE_INT8X4, 2.0);

    parts(&meter);
    control_tick(&meter);
    math::all(&meter);

    let hw = stack::high_water();
    heprintln!("info\tbench stack high-water bytes\t{}", hw.bytes);
    exit::success()
}

/// Where the time of the int8 3-64-64-1 `act()` goes: the runtime's
/// kernels on the bench policy's 64×64 layer, and an on-device check of
/// the assembly kernel against a naive loop over many shapes.
fn parts(meter: &Meter) {
    let Ok(blob) = tinyppo_runtime::Blob::parse(blobs::SMALL_INT8) else {
        fail(format_args!("bench blob small int8"))
    };
    let Some(layer) = blob.layers().nth(1) else {
        fail(format_args!("bench blob has no second layer"))
    };
    let x: [[f32; 64]; 4] = observations(0.9);
    let seed_only = meter.per_call(|j| {
        black_box(rng::seeded(j as u64));
    });
    let mut q = QVec::<64>::new();
    let n = meter.per_call(|j| {
        black_box(kernels::quantize(black_box(&x[j % 4]), &mut q));
    });
    heprintln!("part\tquantize (64, dynamic scale)\t{}", n);
    let s_x = kernels::quantize(&x[0], &mut q);
    let mut acc = [0i32; 64];
    let n = meter.per_call(|_| {
        kernels::matvec_i8(layer.weights, black_box(&q).as_input(64), &mut acc);
        black_box(&acc);
    });
    heprintln!("part\tmatvec_i8 64x64 (SMLAD, 4 rows per pass)\t{}", n);
    let same = acc == naive_matvec::<64, 64>(layer.weights, &q);
    heprintln!("info\tmatvec_i8 64x64 equals the naive sum\t{}", same);
    let mut q2 = QVec::<64>::new();
    let n = meter.per_call(|_| {
        black_box(kernels::requant_tanh(
            black_box(&acc),
            layer.scales,
            layer.bias,
            s_x,
            &mut q2,
        ));
        black_box(&q2);
    });
    heprintln!("part\trequant_tanh (64): rescale, tanh, round\t{}", n);
    // The issue-13 figure: one whole hidden layer as the forward pass runs
    // it (bias, activation and requantization included).
    let n = meter.per_call(|_| {
        kernels::matvec_i8(layer.weights, black_box(&q).as_input(64), &mut acc);
        black_box(kernels::requant_tanh(
            &acc,
            layer.scales,
            layer.bias,
            s_x,
            &mut q2,
        ));
        black_box(&q2);
    });
    heprintln!("layer\t64x64 int8\t4096\t{}", n);
    let mut y = [0.0f32; 64];
    let n = meter.per_call(|_| {
        kernels::rescale(black_box(&acc), layer.scales, layer.bias, s_x, &mut y);
        black_box(&y);
    });
    heprintln!("part\trescale (64)\t{}", n);
    if let (Some(l0), Some(l2)) = (blob.layers().next(), blob.layers().nth(2)) {
        let mut q3 = QVec::<3>::new();
        let n = meter.per_call(|j| {
            black_box(kernels::quantize(black_box(&x[j % 4][..3]), &mut q3));
        });
        heprintln!("part\tquantize (3, dynamic scale)\t{}", n);
        let n = meter.per_call(|_| {
            kernels::matvec_i8(l0.weights, black_box(&q3).as_input(3), &mut acc);
            black_box(&acc);
        });
        heprintln!(
            "part\tmatvec_i8 3->64 (layer 0: one SMLAD word per row)\t{}",
            n
        );
        let mut a1 = [0i32; 1];
        let mut out = [0.0f32; 1];
        let n = meter.per_call(|_| {
            kernels::matvec_i8(l2.weights, black_box(&q).as_input(64), &mut a1);
            kernels::rescale(&a1, l2.scales, l2.bias, s_x, &mut out);
            black_box(&out);
        });
        heprintln!(
            "part\thead 64->1: matvec_i8 (SMLAD, 1 row) + rescale\t{}",
            n
        );
    }
    let n = meter.per_call(|j| {
        let mut v = x[j % 4];
        v.iter_mut()
            .for_each(|a| *a = tinyppo_runtime::math::tanh(*a));
        black_box(&v);
    });
    heprintln!("part\ttanh x64 (math::tanh)\t{}", n);
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
    kernel_shapes();
    tanh_q_check();
    x4::run(meter);
}

/// The interleaved int8 kernel (`kernels::matvec_i8x4`, issue 13): the
/// 64×64 and 256×256 layers of the int8x4 bench blobs against the same
/// layers row-major, and the assembly (aligned weights) against the
/// portable loop (the same bytes one byte off alignment) on many shapes.
mod x4 {
    use super::*;

    /// Word-aligned room for a 256×256 layer plus a byte of offset.
    static mut BUF: [u32; 256 * 256 / 4 + 1] = [0; 256 * 256 / 4 + 1];

    pub fn run(meter: &Meter) {
        for (rm, x4, cols) in [
            (blobs::SMALL_INT8, blobs::SMALL_INT8X4, 64usize),
            (blobs::LARGE_INT8, blobs::LARGE_INT8X4, 256),
        ] {
            let (Ok(a), Ok(b)) = (
                tinyppo_runtime::Blob::parse(rm),
                tinyppo_runtime::Blob::parse(x4),
            ) else {
                fail(format_args!("x4 bench blobs"))
            };
            let (Some(la), Some(lb)) = (a.layers().nth(1), b.layers().nth(1)) else {
                fail(format_args!("x4 bench blobs have no second layer"))
            };
            if !lb.interleaved || lb.weights.as_ptr() as usize % 4 != 0 {
                fail(format_args!(
                    "the int8x4 bench layer is not interleaved and aligned"
                ))
            }
            let x: [[f32; 256]; 1] = observations(0.9);
            let mut q = QVec::<256>::new();
            let s_x = kernels::quantize(&x[0][..cols], &mut q);
            let (mut ra, mut rb) = ([0i32; 256], [0i32; 256]);
            let rows = la.rows;
            let na = meter.per_call(|_| {
                kernels::matvec_i8(la.weights, black_box(&q).as_input(cols), &mut ra[..rows]);
                black_box(&ra);
            });
            let nb = meter.per_call(|_| {
                kernels::matvec_i8x4(lb.weights, black_box(&q).as_input(cols), &mut rb[..rows]);
                black_box(&rb);
            });
            heprintln!(
                "part\tmatvec_i8 {}x{} (row-major, unaligned LDR)\t{}",
                rows,
                cols,
                na
            );
            heprintln!(
                "part\tmatvec_i8x4 {}x{} (interleaved, aligned: LDM)\t{}",
                rows,
                cols,
                nb
            );
            heprintln!(
                "info\tmatvec_i8x4 {}x{} equals matvec_i8\t{}",
                rows,
                cols,
                ra[..rows] == rb[..rows]
            );
            if cols == 64 {
                // The whole hidden layer, both layouts.
                let mut q2 = QVec::<64>::new();
                let mut acc = [0i32; 64];
                let q64 = {
                    let mut v = QVec::<64>::new();
                    kernels::quantize(&x[0][..64], &mut v);
                    v
                };
                let n = meter.per_call(|_| {
                    kernels::matvec_i8x4(lb.weights, black_box(&q64).as_input(64), &mut acc);
                    black_box(kernels::requant_tanh(
                        &acc, lb.scales, lb.bias, s_x, &mut q2,
                    ));
                    black_box(&q2);
                });
                heprintln!("layer\t64x64 int8x4\t4096\t{}", n);
            }
        }
        shapes();
    }

    /// The assembly against the portable loop: every multiple of 4 rows
    /// up to 32 and of 8 columns up to 64, plus 256×256, on random bytes.
    fn shapes() {
        // SAFETY: the bench is single-threaded and nothing else uses BUF.
        #[allow(unsafe_code)]
        let buf: &mut [u32] = unsafe { &mut *core::ptr::addr_of_mut!(BUF) };
        let mut seed = 0x2545_F491u32;
        for w in buf.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            // Bytes in −127..=127 (no 0x80).
            *w = seed & 0x7F7F_7F7F;
        }
        // SAFETY: a [u32] viewed as bytes, same lifetime and length×4.
        #[allow(unsafe_code)]
        let bytes: &[u8] =
            unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 4) };
        let x: [[f32; 256]; 1] = observations(0.7);
        let mut q = QVec::<256>::new();
        kernels::quantize(&x[0], &mut q);
        let mut checked = 0u32;
        let mut check = |rows: usize, cols: usize| {
            let n = rows * cols;
            let (mut a, mut b) = ([0i32; 256], [0i32; 256]);
            // Aligned: the assembly. One byte further: the portable loop.
            kernels::matvec_i8x4(&bytes[..n], q.as_input(cols), &mut a[..rows]);
            kernels::matvec_i8x4(&bytes[1..n + 1], q.as_input(cols), &mut b[..rows]);
            let naive = |shift: usize| {
                let mut out = [0i32; 256];
                for (r, o) in out.iter_mut().enumerate().take(rows) {
                    *o = (0..cols)
                        .map(|c| {
                            let at =
                                shift + ((r / 4) * (cols / 4) + c / 4) * 16 + 4 * (r % 4) + c % 4;
                            i32::from(bytes[at] as i8) * i32::from(q.get(c, cols))
                        })
                        .sum();
                }
                out
            };
            let (want, want1) = (naive(0), naive(1));
            if a[..rows] != want[..rows] || b[..rows] != want1[..rows] {
                fail(format_args!(
                    "matvec_i8x4 {rows}x{cols} differs from the naive sum"
                ));
            }
            checked += 1;
        };
        for rows in (4..=32).step_by(4) {
            for cols in (8..=64).step_by(8) {
                check(rows, cols);
            }
        }
        check(256, 256);
        heprintln!(
            "info\tmatvec_i8x4 (assembly and portable) equals the naive sum\ttrue ({} shapes)",
            checked
        );
    }
}

/// `kernels::tanh_q` (assembly on this target) against
/// `kernels::tanh_q_portable` (what the host runs): every f32 within 2⁸ of
/// each of the 127 thresholds, both signs, and a geometric sweep over all
/// magnitudes.
fn tanh_q_check() {
    let mut checked = 0u32;
    let mut check = |y: f32| {
        let (got, want) = (kernels::tanh_q(y), kernels::tanh_q_portable(y));
        if got != want {
            fail(format_args!("tanh_q({y:e}) = {got}, portable {want}"));
        }
        checked += 1;
    };
    for &t in &kernels::TANH_THRESHOLDS {
        for bits in t - 256..t + 256 {
            check(f32::from_bits(bits));
            check(-f32::from_bits(bits));
        }
    }
    let mut bits = 0u32;
    while bits < 0x7F80_0000 {
        check(f32::from_bits(bits));
        check(f32::from_bits(bits | 0x8000_0000));
        bits += 0x0000_7FFF;
    }
    heprintln!(
        "info\ttanh_q (assembly) equals tanh_q_portable\ttrue ({} inputs)",
        checked
    );
}

/// `Σ_c q_rc·p_c` by the definition, for the check.
fn naive_matvec<const R: usize, const C: usize>(w: &[u8], q: &QVec<C>) -> [i32; R] {
    let mut out = [0i32; R];
    for (r, o) in out.iter_mut().enumerate() {
        for c in 0..C {
            let wv = w.get(r * C + c).map_or(0, |&b| i32::from(b as i8));
            *o += wv * i32::from(q.get(c, C));
        }
    }
    out
}

/// `matvec_i8` (the SMLAD assembly on this target) against the definition
/// for rows 1–9 × cols {1, 3, 8, 12, 16, 24, 67}, weights at every byte
/// offset 0–3 (unaligned rows), random bytes (including −128) and inputs.
fn kernel_shapes() {
    const COLS: [usize; 7] = [1, 3, 8, 12, 16, 24, 67];
    let mut r = rng::seeded(0x5EED);
    let mut bytes = [0u8; 9 * 67 + 4];
    let mut checked = 0u32;
    for b in bytes.iter_mut() {
        *b = (rand_core::RngCore::next_u32(&mut r) >> 24) as u8;
    }
    for &cols in &COLS {
        let mut xs = [0.0f32; 67];
        for v in xs.iter_mut().take(cols) {
            *v = rng::uniform(&mut r, -3.0, 3.0);
        }
        let mut q = QVec::<67>::new();
        kernels::quantize(&xs[..cols], &mut q);
        for rows in 1..=9 {
            for off in 0..4 {
                let w = &bytes[off..off + rows * cols];
                let mut acc = [0i32; 9];
                kernels::matvec_i8(w, q.as_input(cols), &mut acc[..rows]);
                for (i, &a) in acc[..rows].iter().enumerate() {
                    let mut want = 0i32;
                    for c in 0..cols {
                        want += i32::from(w[i * cols + c] as i8) * i32::from(q.get(c, cols));
                    }
                    if a != want {
                        fail(format_args!(
                            "matvec_i8 {rows}x{cols} (offset {off}) row {i}: {a} != {want}"
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    heprintln!(
        "info\tmatvec_i8 equals the naive sum on all shapes\ttrue ({} shapes x offsets)",
        checked
    );
}

/// One control tick of the firmware: `act()` on the pendulum policy plus
/// one plant step (the simulated stand-in for sensors and actuator).
fn control_tick(meter: &Meter) {
    let Ok(policy) = Policy::<3, 1, 64>::from_bytes(POLICY_BLOB) else {
        fail(format_args!("embedded policy refused"))
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
    let mut p2 = Pendulum::new();
    let _ = p2.reset(&mut r);
    let n = meter.per_call(|j| {
        let t = p2.step(&[black_box((j % 5) as f32 * 0.5 - 1.0)]);
        if t.truncated || t.terminated {
            let _ = p2.reset(&mut rng::seeded(j as u64));
        }
        black_box(t);
    });
    heprintln!(
        "part\tpendulum plant step (simulated; libm sinf, cosf)\t{}",
        n
    );

    // The firmware's whole loop: `sim::run_simulated` over 5 episodes
    // (1000 ticks) with the log frames written to UART0 (QEMU discards
    // them here), timed as one run (≈ 60M instructions, below one wrap).
    let Some(mut uart) = Uart0::take() else {
        fail(format_args!("UART0 taken twice"))
    };
    let cfg = RunConfig {
        episodes: 5,
        seed: 1,
        deterministic: false,
    };
    let t0 = timing::now();
    let stats = run_simulated::<_, 3, 1, 64, 4>(&policy, &mut Pendulum::new(), &cfg, &mut |f| {
        uart.write_all(f)
    });
    let t1 = timing::now();
    let per_tick = u64::from(timing::ticks(t0, t1)) * INSTRUCTIONS_PER_TICK
        / u64::from(stats.transitions.max(1));
    heprintln!(
        "act\tcontrol tick: run_simulated incl. logging to UART0 ({} ticks, {} B/tick)\t{}",
        stats.transitions,
        stats.bytes / stats.transitions.max(1),
        per_tick
    );
    // The same policy re-encoded as int8x4 by build.rs (the same actions,
    // so the same trajectory and log).
    let Ok(x4) = Policy::<3, 1, 64>::from_bytes(blobs::POLICY_X4) else {
        return;
    };
    let t0 = timing::now();
    let st4 = run_simulated::<_, 3, 1, 64, 4>(&x4, &mut Pendulum::new(), &cfg, &mut |f| {
        uart.write_all(f)
    });
    let t1 = timing::now();
    let per_tick = u64::from(timing::ticks(t0, t1)) * INSTRUCTIONS_PER_TICK
        / u64::from(st4.transitions.max(1));
    heprintln!(
        "act\tcontrol tick: run_simulated incl. logging, the policy as int8x4\t{}",
        per_tick
    );
    heprintln!(
        "info\tint8x4 policy: same return as int8\t{}",
        st4.return_sum == stats.return_sum
    );
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

    /// `math::sqrt`: the FPU's `VSQRT.F32` on this target.
    fn vsqrt(x: f32) -> f32 {
        tinyppo_runtime::math::sqrt(x)
    }

    /// `math::sincos_turns` at a step `k ≈ x/(2π)·2²⁴` (f32 arithmetic, so
    /// the timing is not dominated by soft-float f64).
    fn turns(x: f32) -> u32 {
        (x * (16_777_216.0 / core::f32::consts::TAU)) as u32 & 0x00FF_FFFF
    }

    /// The exact angle `math::sincos_turns` evaluates for `x`.
    fn angle(x: f64) -> f64 {
        f64::from(turns(x as f32)) * (core::f64::consts::TAU / 16_777_216.0)
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
            "math::tanh, rational [13/6]",
            &TANH,
            tinyppo_runtime::math::tanh,
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
        one(
            meter,
            "sqrtf",
            "math::sqrt: vsqrt.f32 (FPU)",
            &SQRT,
            vsqrt,
            libm::sqrt,
        );
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
            "math::sincos_turns (of 2pi k/2^24)",
            &TRIG,
            |x| tinyppo_runtime::math::sincos_turns(turns(x)).0,
            |x| libm::sin(angle(x)),
        );
        one(
            meter,
            "cosf",
            "math::sincos_turns (of 2pi k/2^24)",
            &TRIG,
            |x| tinyppo_runtime::math::sincos_turns(turns(x)).1,
            |x| libm::cos(angle(x)),
        );
        one(
            meter,
            "sincosf",
            "math::sincos_turns (sin+cos)",
            &TRIG,
            |x| {
                let (s, c) = tinyppo_runtime::math::sincos_turns(turns(x));
                s + c
            },
            |x| libm::sin(angle(x)) + libm::cos(angle(x)),
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
