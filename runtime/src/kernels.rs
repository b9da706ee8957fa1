//! Dense-layer kernels: `y = W x + b` for f32 and int8 weights.
//!
//! Shapes: `W` is `rows × cols` row-major, `x` has `cols` elements, `y` has
//! `rows`. The slices come from a validated [`crate::Blob`], so their lengths
//! agree; the kernels still check them (an inconsistent call computes zeros
//! or a prefix, it never panics or reads out of bounds).
//!
//! **int8.** Weights are stored as `w[r][c] ≈ s_r · q[r][c]` with
//! `q ∈ [−127, 127]`. The layer input is quantized once per layer into
//! `p_c ∈ [−127, 127]` with one scale `s_x` (a [`QVec`]): dynamically,
//! `s_x = max_j |x_j| / 127` ([`quantize`]), or, after a tanh layer, with the
//! fixed scale [`TANH_SCALE`] `= 1/127` straight from the pre-activations,
//! `p = round(127·tanh(y))` with the exact tanh ([`requant_tanh`],
//! [`tanh_q`]: a table of the 127 thresholds of `|y|`). The products are
//! accumulated exactly in `i32` (|acc| ≤ 256·127² < 2²⁴) by [`matvec_i8`], and
//! `y_r = f32(acc_r) · (s_r · s_x) + b_r` ([`rescale`]). The sums are exact, so
//! their order does not matter: the Cortex-M4 path (`SXTB16` + `SMLAD`, two
//! multiply-accumulates per instruction, four rows per pass) and the
//! portable path produce the same integers.
//!
//! Rounding: `p = round(t)` to nearest, ties to even, computed as
//! `bits(t + 1.5·2²³) − bits(1.5·2²³)` — exact for `|t| < 2²²`, one f32
//! addition and an integer subtraction instead of a conversion and a branch.
//!
//! Error bound (used by the tests): with `|x_j − s_x p_j| ≤ e_j` and
//! `|w_rc − s_r q_rc| ≤ s_r/2`, `|y_r − ŷ_r| ≤ (s_r/2)·Σ_c |s_x p_c| + Σ_c |w_rc|·e_c`.
//! For [`quantize`], `e_j = s_x/2`; for [`requant_tanh`], against the exact
//! `tanh(y_j)`, `e_j = 1/254 + 6e-8` (the rounding, and the f32 rounding of
//! `s_x = 1/127`).

use crate::format::f32s;

/// Columns per step of the int8 kernel: `matvec_i8` packs the first
/// `cols − cols % BLOCK` inputs for `SMLAD` and does the rest one by one.
pub const BLOCK: usize = 8;

/// Scale of the int8 input of a layer that follows a tanh layer:
/// `p = round(127·tanh(y))` stands for `p/127`.
pub const TANH_SCALE: f32 = 1.0 / 127.0;

/// Below this `max |x|` an input is quantized as all zeros (`s_x = 0`):
/// keeps `127/max|x|` finite (≤ 127·2¹⁰⁰), so the rounding trick applies.
pub const MIN_AMAX: f32 = f32::from_bits(0x0D80_0000); // 2⁻¹⁰⁰ ≈ 7.9e-31

/// `1.5·2²³`: adding it to `|t| < 2²²` rounds `t` to an integer (ties to
/// even), which then sits in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;

/// `t` rounded to the nearest integer, ties to even, for `|t| < 2²²`.
#[inline(always)]
fn round_even(t: f32) -> i16 {
    ((t + MAGIC).to_bits() as i32).wrapping_sub(MAGIC_BITS) as i16
}

/// The `i`-th little-endian f32 of `bytes` (0.0 past the end).
#[inline(always)]
fn f32_at(bytes: &[u8], i: usize) -> f32 {
    match bytes.get(4 * i..4 * i + 4) {
        Some(&[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        _ => 0.0,
    }
}

/// A quantized layer input of at most `N` values `p_c ∈ [−127, 127]`, laid
/// out for the int8 kernel: of a `cols`-wide input, the first
/// `cols8 = cols − cols % 8` values are stored in groups of four as
/// `[p_c, p_{c+2}, p_{c+1}, p_{c+3}]` (so each 32-bit word holds the i16
/// pair that one `SMLAD` multiplies with bytes 0, 2 or 1, 3 of a weight
/// word), the rest in place. Word-aligned, so the kernel can load pairs of
/// words.
#[derive(Debug, Clone)]
#[repr(C, align(4))]
pub struct QVec<const N: usize> {
    h: [i16; N],
}

impl<const N: usize> Default for QVec<N> {
    fn default() -> Self {
        QVec { h: [0; N] }
    }
}

/// Position of column `c` in a [`QVec`] of a `cols8`-aligned input.
#[inline(always)]
fn slot(c: usize, cols8: usize) -> usize {
    if c < cols8 {
        // Swap bits 0 and 1: 0, 1, 2, 3 → 0, 2, 1, 3.
        (c & !3) | ((c & 1) << 1) | ((c >> 1) & 1)
    } else {
        c
    }
}

impl<const N: usize> QVec<N> {
    /// All zeros.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first `cols` values (at most `N`) as a kernel input.
    pub fn as_input(&self, cols: usize) -> QInput<'_> {
        let cols = cols.min(N);
        QInput { h: &self.h, cols }
    }

    /// The stored values in the kernel's layout (see [`QVec`]), for a
    /// kernel outside this module (the firmware bench's prototypes).
    pub fn packed(&self) -> &[i16] {
        &self.h
    }

    /// `p_c`, in column order (0 past the end).
    pub fn get(&self, c: usize, cols: usize) -> i16 {
        let cols = cols.min(N);
        if c >= cols {
            return 0;
        }
        self.h
            .get(slot(c, cols - cols % BLOCK))
            .copied()
            .unwrap_or(0)
    }
}

/// A borrowed [`QVec`] with its width: the input of [`matvec_i8`]. Only a
/// `QVec` makes one, so `h` is word-aligned and `cols ≤ h.len()`.
#[derive(Debug, Clone, Copy)]
pub struct QInput<'a> {
    h: &'a [i16],
    cols: usize,
}

impl QInput<'_> {
    /// Number of inputs.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// `y = W x + b` with f32 weights (LE bytes).
#[inline(never)]
pub fn dense_f32(weights: &[u8], bias: &[u8], x: &[f32], y: &mut [f32]) {
    let cols = x.len();
    if cols == 0 {
        return;
    }
    for ((out, row), b) in y
        .iter_mut()
        .zip(weights.chunks_exact(4 * cols))
        .zip(f32s(bias))
    {
        let mut acc = b;
        for (w, &xv) in f32s(row).zip(x) {
            acc += w * xv;
        }
        *out = acc;
    }
}

/// Quantizes `x` (at most `N` values) into `q` with one symmetric scale:
/// `amax = max_j |x_j|`; if `amax < MIN_AMAX` (including all zeros) every
/// `p_j = 0` and the scale is 0; otherwise `inv = 127/amax`,
/// `p_j = round_even(x_j · inv)` and the scale is `amax/127`. Returns the
/// scale. (`|x_j·inv| ≤ 127·(1 + 2⁻²³) < 127.5`, so `|p_j| ≤ 127`.)
pub fn quantize<const N: usize>(x: &[f32], q: &mut QVec<N>) -> f32 {
    let x = x.get(..N).unwrap_or(x);
    let cols = x.len();
    let cols8 = cols - cols % BLOCK;
    let amax = x.iter().fold(0.0f32, |m, &v| {
        let a = libm::fabsf(v);
        if a > m {
            a
        } else {
            m
        }
    });
    let h = q.h.get_mut(..cols).unwrap_or(&mut []);
    // (`amax` is never NaN: the fold only takes values greater than 0.)
    if amax < MIN_AMAX {
        h.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let inv = 127.0 / amax;
    let (blocks, tail) = h.split_at_mut(cols8);
    let (xb, xt) = x.split_at(cols8);
    for (h4, x4) in blocks.chunks_exact_mut(4).zip(xb.chunks_exact(4)) {
        if let ([h0, h1, h2, h3], &[x0, x1, x2, x3]) = (h4, x4) {
            *h0 = round_even(x0 * inv);
            *h1 = round_even(x2 * inv);
            *h2 = round_even(x1 * inv);
            *h3 = round_even(x3 * inv);
        }
    }
    for (hv, &xv) in tail.iter_mut().zip(xt) {
        *hv = round_even(xv * inv);
    }
    amax / 127.0
}

/// `acc_r = Σ_c q_rc·p_c` for every row `r < acc.len()`, exactly, in `i32`
/// (`weights`: `rows × cols` int8, row-major; `cols = x.cols()`). If
/// `weights` is shorter than `rows·cols`, `acc` is all zeros.
pub fn matvec_i8(weights: &[u8], x: QInput<'_>, acc: &mut [i32]) {
    let cols = x.cols;
    let rows = acc.len();
    if cols == 0 || rows.checked_mul(cols).is_none_or(|n| weights.len() < n) {
        acc.iter_mut().for_each(|a| *a = 0);
        return;
    }
    let cols8 = cols - cols % BLOCK;
    let fresh = cols8 == 0;
    if !fresh {
        blocks(weights, cols, cols8, x.h, acc);
    }
    // The last `cols % 8` columns, stored in place.
    let xt = x.h.get(cols8..cols).unwrap_or(&[]);
    // Rows the one-word SMLAD tail has done (device, ≤ 4 tail columns).
    let done = tail_words(weights, cols, cols8, xt, acc, fresh);
    let (weights, acc) = (
        weights.get(done * cols..).unwrap_or(&[]),
        acc.get_mut(done..).unwrap_or(&mut []),
    );
    if fresh {
        acc.iter_mut().for_each(|a| *a = 0);
    }
    match cols - cols8 {
        1 => tail1(weights, cols, cols8, xt, acc),
        2 => tail2(weights, cols, cols8, xt, acc),
        3 => tail3(weights, cols, cols8, xt, acc),
        4 => tail4(weights, cols, cols8, xt, acc),
        5 => tail5(weights, cols, cols8, xt, acc),
        6 => tail6(weights, cols, cols8, xt, acc),
        7 => tail7(weights, cols, cols8, xt, acc),
        _ => {}
    }
}

/// [`matvec_i8`] for an interleaved layer ([`crate::Encoding::Int8x4`]):
/// `rows = acc.len()` a multiple of 4, `cols = x.cols()` a multiple of 8,
/// `weights` the `rows·cols` bytes of [`crate::format::Layer::q`]'s
/// interleaved layout. The same exact sums. On ARMv7E-M with `weights`
/// word-aligned in memory (an aligned blob: `embed_policy!` aligns it),
/// one `LDM` fetches 4 rows × 4 columns; otherwise the portable loop runs.
/// A shape or length that does not fit gives zeros.
pub fn matvec_i8x4(weights: &[u8], x: QInput<'_>, acc: &mut [i32]) {
    let (rows, cols) = (acc.len(), x.cols);
    let fits = crate::format::interleavable(rows, cols)
        && rows.checked_mul(cols).is_some_and(|n| weights.len() >= n)
        && x.h.len() >= cols;
    if !fits {
        acc.iter_mut().for_each(|a| *a = 0);
        return;
    }
    #[cfg(tinyppo_armv7em)]
    if (weights.as_ptr() as usize) % 4 == 0 {
        dsp::groups4(weights, cols, x.h, acc);
        return;
    }
    let xb = x.h.get(..cols).unwrap_or(&[]);
    for (a4, wg) in acc.chunks_exact_mut(4).zip(weights.chunks_exact(4 * cols)) {
        let mut s = [0i32; 4];
        for (w16, p4) in wg.chunks_exact(16).zip(xb.chunks_exact(4)) {
            if let &[p0, p2, p1, p3] = p4 {
                for (j, w4) in w16.chunks_exact(4).enumerate() {
                    if let (Some(sj), &[w0, w1, w2, w3]) = (s.get_mut(j), w4) {
                        *sj += i32::from(w0 as i8) * i32::from(p0)
                            + i32::from(w1 as i8) * i32::from(p1)
                            + i32::from(w2 as i8) * i32::from(p2)
                            + i32::from(w3 as i8) * i32::from(p3);
                    }
                }
            }
        }
        a4.copy_from_slice(&s);
    }
}

/// The tail columns of the leading rows with one SMLAD word per row
/// (device only; returns how many rows it did, 0 elsewhere).
#[cfg(not(tinyppo_armv7em))]
fn tail_words(_: &[u8], _: usize, _: usize, _: &[i16], _: &mut [i32], _: bool) -> usize {
    0
}

/// The `T = xt.len() ≤ 4` tail columns of every row whose 4-byte word
/// `[r·cols + cols8, +4)` lies inside `weights` (all but the last one or
/// few when `T < 4`: the bytes past a row's tail belong to the next row
/// and meet a zero input). `acc_r` is set (`fresh`) or added to. Returns
/// the number of rows done.
#[cfg(tinyppo_armv7em)]
fn tail_words(
    weights: &[u8],
    cols: usize,
    cols8: usize,
    xt: &[i16],
    acc: &mut [i32],
    fresh: bool,
) -> usize {
    let t = xt.len();
    if t == 0 || t > 4 || cols == 0 {
        return 0;
    }
    // Rows r with r·cols + cols8 + 4 ≤ len.
    let rows = match weights.len().checked_sub(cols8 + 4) {
        Some(room) => (room / cols + 1).min(acc.len()),
        None => 0,
    };
    if rows == 0 {
        return 0;
    }
    let p = |i: usize| u32::from(xt.get(i).map_or(0, |&v| v as u16));
    let (x02, x13) = (p(0) | (p(2) << 16), p(1) | (p(3) << 16));
    dsp::tail_words(weights, cols, cols8, rows, x02, x13, acc, fresh);
    rows
}

/// `tailT(weights, cols, cols8, xt, acc)` for `T = 1…7`:
/// `acc_r += Σ_{t<T} q_{r,cols8+t}·p_{cols8+t}` over the `T` last columns,
/// with the `T` inputs in registers and the sum written out
/// (`opt-level = "s"` does not unroll a loop over `T`).
macro_rules! tail_fn {
    ($name:ident, $t:literal, $($i:literal)+) => {
        #[inline(never)]
        fn $name(weights: &[u8], cols: usize, cols8: usize, xt: &[i16], acc: &mut [i32]) {
            let p = [$(xt.get($i).map_or(0, |&v| i32::from(v))),+];
            for (a, row) in acc.iter_mut().zip(weights.chunks_exact(cols)) {
                if let Some(w) = row.get(cols8..cols8 + $t) {
                    *a += 0 $(+ i32::from(w[$i] as i8) * p[$i])+;
                }
            }
        }
    };
}
tail_fn!(tail1, 1, 0);
tail_fn!(tail2, 2, 0 1);
tail_fn!(tail3, 3, 0 1 2);
tail_fn!(tail4, 4, 0 1 2 3);
tail_fn!(tail5, 5, 0 1 2 3 4);
tail_fn!(tail6, 6, 0 1 2 3 4 5);
tail_fn!(tail7, 7, 0 1 2 3 4 5 6);

/// `acc_r = Σ_{c < cols8} q_rc·p_c` over the packed columns (portable).
#[cfg(not(tinyppo_armv7em))]
fn blocks(weights: &[u8], cols: usize, cols8: usize, h: &[i16], acc: &mut [i32]) {
    let xb = h.get(..cols8).unwrap_or(&[]);
    for (a, row) in acc.iter_mut().zip(weights.chunks_exact(cols)) {
        let wb = row.get(..cols8).unwrap_or(&[]);
        let mut s = 0i32;
        for (w4, p4) in wb.chunks_exact(4).zip(xb.chunks_exact(4)) {
            if let (&[w0, w1, w2, w3], &[p0, p2, p1, p3]) = (w4, p4) {
                s += i32::from(w0 as i8) * i32::from(p0)
                    + i32::from(w1 as i8) * i32::from(p1)
                    + i32::from(w2 as i8) * i32::from(p2)
                    + i32::from(w3 as i8) * i32::from(p3);
            }
        }
        *a = s;
    }
}

/// `acc_r = Σ_{c < cols8} q_rc·p_c` over the packed columns with the
/// ARMv7E-M DSP instructions: four rows per pass (`dsp::rows4`), then the
/// remaining rows one at a time (`dsp::row1`).
#[cfg(tinyppo_armv7em)]
fn blocks(weights: &[u8], cols: usize, cols8: usize, h: &[i16], acc: &mut [i32]) {
    let rows = acc.len();
    // Re-checked here because the assembly reads through raw pointers:
    // rows·cols weight bytes, cols8 i16 inputs from a word-aligned QVec.
    if cols8 == 0 || rows.checked_mul(cols).is_none_or(|n| weights.len() < n) || h.len() < cols8 {
        acc.iter_mut().for_each(|a| *a = 0);
        return;
    }
    let rows4 = rows - rows % 4;
    let (acc4, acc1) = acc.split_at_mut(rows4);
    dsp::rows4(weights, cols, cols8, h, acc4);
    let rest = weights.get(rows4 * cols..).unwrap_or(&[]);
    for (a, row) in acc1.iter_mut().zip(rest.chunks_exact(cols)) {
        *a = dsp::row1(row, cols8, h);
    }
}

#[cfg(tinyppo_armv7em)]
#[allow(unsafe_code)]
mod dsp {
    //! The int8 dot products with `SXTB16` and `SMLAD` (what CMSIS-NN's
    //! `arm_nn_mat_mult` does). Each little-endian weight word holds
    //! `q_c..q_{c+3}`; `SXTB16 w` gives the i16 pair `(q_c, q_{c+2})`,
    //! `SXTB16 w, ROR #8` gives `(q_{c+1}, q_{c+3})`, and `SMLAD` adds the
    //! two products with the input pairs `(p_c, p_{c+2})`, `(p_{c+1}, p_{c+3})`
    //! that [`super::QVec`] stores as one word each: 4 multiply-accumulates in
    //! 1 load + 4 instructions. The sums stay below 256·127² < 2³¹, so the
    //! results equal the portable loop's.
    //!
    //! Weight rows start anywhere in the blob (unaligned): they are read
    //! with single `LDR`s, which ARMv7-M allows unaligned (`LDRD`/`LDM`
    //! would fault); the `QVec` is word-aligned and read with `LDRD`.

    /// Rows `0..acc.len()` (a multiple of 4) over the first `cols8`
    /// columns (a multiple of 8, ≥ 8). The caller guarantees
    /// `weights.len() ≥ acc.len()·cols` and `h.len() ≥ cols8` with `h`
    /// word-aligned.
    pub(super) fn rows4(weights: &[u8], cols: usize, cols8: usize, h: &[i16], acc: &mut [i32]) {
        let groups = acc.len() / 4;
        if groups == 0 {
            return;
        }
        // Distance from the end of row 1's packed part to row 4's start.
        let skip = 3 * cols - cols8;
        let x = h.as_ptr();
        // SAFETY: reads weight bytes [4g·cols + k·cols, … + cols8) for
        // rows k = 0..3 of each group g < groups, all inside `weights`
        // (4·groups·cols ≤ len, by the caller); reads the cols8 i16 of
        // `h` (cols8 ≤ h.len()) as cols8/2 words with LDRD, which needs
        // the word alignment that `QVec` (repr(align(4))) guarantees;
        // writes 4·groups i32 to `acc`. r6 and r7 (which `asm!` cannot
        // name: LLVM's base and frame pointer) are saved on the stack and
        // restored; so is everything the block pushes. No flags or other
        // registers outlive the block except the declared clobbers.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "sub sp, #16",
                "str r0, [sp]",      // acc pointer
                "str r1, [sp, #4]",  // groups left
                "str r2, [sp, #8]",  // skip
                "2:",
                "movs r0, #0",
                "movs r1, #0",
                "movs r2, #0",
                "movs r3, #0",
                "add r9, r8, r10, lsr #1", // row 1 = row 0 + cols
                "mov r11, lr",            // x pointer
                "1:",
                "ldrd r4, r5, [r11], #8",
                "ldr r6, [r8, r10]",      // row 2
                "sxtb16 r7, r6",
                "smlad r2, r7, r4, r2",
                "sxtb16 r6, r6, ror #8",
                "smlad r2, r6, r5, r2",
                "ldr r6, [r9, r10]",      // row 3
                "sxtb16 r7, r6",
                "smlad r3, r7, r4, r3",
                "sxtb16 r6, r6, ror #8",
                "smlad r3, r6, r5, r3",
                "ldr r6, [r9], #4",       // row 1
                "sxtb16 r7, r6",
                "smlad r1, r7, r4, r1",
                "sxtb16 r6, r6, ror #8",
                "smlad r1, r6, r5, r1",
                "ldr r6, [r8], #4",       // row 0
                "sxtb16 r7, r6",
                "smlad r0, r7, r4, r0",
                "sxtb16 r6, r6, ror #8",
                "smlad r0, r6, r5, r0",
                "ldrd r4, r5, [r11], #8",
                "ldr r6, [r8, r10]",
                "sxtb16 r7, r6",
                "smlad r2, r7, r4, r2",
                "sxtb16 r6, r6, ror #8",
                "smlad r2, r6, r5, r2",
                "ldr r6, [r9, r10]",
                "sxtb16 r7, r6",
                "smlad r3, r7, r4, r3",
                "sxtb16 r6, r6, ror #8",
                "smlad r3, r6, r5, r3",
                "ldr r6, [r9], #4",
                "sxtb16 r7, r6",
                "smlad r1, r7, r4, r1",
                "sxtb16 r6, r6, ror #8",
                "smlad r1, r6, r5, r1",
                "ldr r6, [r8], #4",
                "sxtb16 r7, r6",
                "smlad r0, r7, r4, r0",
                "sxtb16 r6, r6, ror #8",
                "smlad r0, r6, r5, r0",
                "cmp r11, r12",
                "bne 1b",
                "ldr r6, [sp]",
                "stmia r6!, {{r0, r1, r2, r3}}",
                "str r6, [sp]",
                "ldr r6, [sp, #8]",
                "add r8, r9, r6",         // next group's row 0
                "ldr r6, [sp, #4]",
                "subs r6, #1",
                "str r6, [sp, #4]",
                "bne 2b",
                "add sp, #16",
                "pop {{r6, r7}}",
                inout("r0") acc.as_mut_ptr() => _,
                inout("r1") groups => _,
                inout("r2") skip => _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                inout("r8") weights.as_ptr() => _,
                out("r9") _,
                in("r10") 2 * cols,
                out("r11") _,
                in("r12") x.wrapping_add(cols8),
                inout("lr") x => _,
            );
        }
    }

    /// The interleaved layer (`super::matvec_i8x4`): per group of 4 rows,
    /// `cols/8` passes of 2 × (1 `LDRD` of 4 inputs, 1 `LDM` of the 4
    /// rows' 4 weights, 8 `SXTB16`, 8 `SMLAD`). The caller guarantees
    /// `weights` word-aligned with `acc.len()·cols` bytes, `acc.len()` a
    /// multiple of 4 (≥ 4), `cols` a multiple of 8 (≥ 8), `h.len() ≥ cols`
    /// and `h` word-aligned.
    pub(super) fn groups4(weights: &[u8], cols: usize, h: &[i16], acc: &mut [i32]) {
        let groups = acc.len() / 4;
        if groups == 0 {
            return;
        }
        let x = h.as_ptr();
        // SAFETY: reads groups·4·cols weight bytes (all of `weights`'s
        // first acc.len()·cols, by the caller) as words with LDM, which
        // needs the word alignment the caller checked; reads the cols i16
        // of `h` as words with LDRD (a word-aligned QVec); writes
        // 4·groups i32 to `acc`. r6 and r7 are saved and restored, the
        // 16 stack bytes are this block's own, `lr` is restored from them.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "sub sp, #16",
                "str r0, [sp]",      // acc pointer
                "str r1, [sp, #4]",  // groups left
                "str lr, [sp, #8]",  // x pointer
                "2:",
                "movs r0, #0",
                "movs r1, #0",
                "movs r2, #0",
                "movs r3, #0",
                "ldr r11, [sp, #8]",
                "1:",
                "ldrd r4, r5, [r11], #8",
                "ldmia r8!, {{r6, r7, r9, r10}}",
                "sxtb16 lr, r6",
                "smlad r0, lr, r4, r0",
                "sxtb16 r6, r6, ror #8",
                "smlad r0, r6, r5, r0",
                "sxtb16 lr, r7",
                "smlad r1, lr, r4, r1",
                "sxtb16 r7, r7, ror #8",
                "smlad r1, r7, r5, r1",
                "sxtb16 lr, r9",
                "smlad r2, lr, r4, r2",
                "sxtb16 r9, r9, ror #8",
                "smlad r2, r9, r5, r2",
                "sxtb16 lr, r10",
                "smlad r3, lr, r4, r3",
                "sxtb16 r10, r10, ror #8",
                "smlad r3, r10, r5, r3",
                "ldrd r4, r5, [r11], #8",
                "ldmia r8!, {{r6, r7, r9, r10}}",
                "sxtb16 lr, r6",
                "smlad r0, lr, r4, r0",
                "sxtb16 r6, r6, ror #8",
                "smlad r0, r6, r5, r0",
                "sxtb16 lr, r7",
                "smlad r1, lr, r4, r1",
                "sxtb16 r7, r7, ror #8",
                "smlad r1, r7, r5, r1",
                "sxtb16 lr, r9",
                "smlad r2, lr, r4, r2",
                "sxtb16 r9, r9, ror #8",
                "smlad r2, r9, r5, r2",
                "sxtb16 lr, r10",
                "smlad r3, lr, r4, r3",
                "sxtb16 r10, r10, ror #8",
                "smlad r3, r10, r5, r3",
                "cmp r11, r12",
                "bne 1b",
                "ldr r6, [sp]",
                "stmia r6!, {{r0, r1, r2, r3}}",
                "str r6, [sp]",
                "ldr r6, [sp, #4]",
                "subs r6, #1",
                "str r6, [sp, #4]",
                "bne 2b",
                "ldr lr, [sp, #8]",
                "add sp, #16",
                "pop {{r6, r7}}",
                inout("r0") acc.as_mut_ptr() => _,
                inout("r1") groups => _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                inout("r8") weights.as_ptr() => _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                in("r12") x.wrapping_add(cols),
                inout("lr") x => _,
            );
        }
    }

    /// `acc_r (=|+=) Σ` of the 4 bytes at `r·cols + cols8` times the input
    /// pairs `x02`, `x13`, for `r < rows`. The caller guarantees
    /// `(rows − 1)·cols + cols8 + 4 ≤ weights.len()`, `rows ≥ 1` and
    /// `acc.len() ≥ rows`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tail_words(
        weights: &[u8],
        cols: usize,
        cols8: usize,
        rows: usize,
        x02: u32,
        x13: u32,
        acc: &mut [i32],
        fresh: bool,
    ) {
        let p = weights.as_ptr().wrapping_add(cols8);
        let a = acc.as_mut_ptr();
        let end = a.wrapping_add(rows);
        // SAFETY: reads the 4 bytes at p + r·cols for r < rows, inside
        // `weights` (caller), with single LDRs (unaligned is fine);
        // reads (if !fresh) and writes acc[0..rows]; registers only
        // otherwise. `rows ≥ 1`, so the do-while loop is right.
        unsafe {
            if fresh {
                core::arch::asm!(
                    "1:",
                    "ldr {w}, [{p}]",
                    "add {p}, {cols}",
                    "sxtb16 {t}, {w}",
                    "sxtb16 {w}, {w}, ror #8",
                    "smuad {t}, {t}, {x02}",
                    "smlad {t}, {w}, {x13}, {t}",
                    "str {t}, [{a}], #4",
                    "cmp {a}, {end}",
                    "bne 1b",
                    p = inout(reg) p => _,
                    a = inout(reg) a => _,
                    end = in(reg) end,
                    cols = in(reg) cols,
                    x02 = in(reg) x02,
                    x13 = in(reg) x13,
                    w = out(reg) _,
                    t = out(reg) _,
                    options(nostack),
                );
            } else {
                core::arch::asm!(
                    "1:",
                    "ldr {w}, [{p}]",
                    "add {p}, {cols}",
                    "ldr {s}, [{a}]",
                    "sxtb16 {t}, {w}",
                    "sxtb16 {w}, {w}, ror #8",
                    "smlad {s}, {t}, {x02}, {s}",
                    "smlad {s}, {w}, {x13}, {s}",
                    "str {s}, [{a}], #4",
                    "cmp {a}, {end}",
                    "bne 1b",
                    p = inout(reg) p => _,
                    a = inout(reg) a => _,
                    end = in(reg) end,
                    cols = in(reg) cols,
                    x02 = in(reg) x02,
                    x13 = in(reg) x13,
                    w = out(reg) _,
                    t = out(reg) _,
                    s = out(reg) _,
                    options(nostack),
                );
            }
        }
    }

    /// [`super::tanh_q_portable`] on the bits `y` of the pre-activation, in
    /// 9 instructions (`CMP` + `ADC` for the last threshold, the sign by
    /// `(p ^ m) − m` with shifted operands).
    #[inline(always)]
    pub(super) fn tanh_q(y: u32, base: &[u8; 1024], next: &[u32; 128]) -> i16 {
        let p: u32;
        // SAFETY: reads base[i] with i = usat(…, 10) ≤ 1023 < 1024 and
        // next[c] with c = base[i] ≤ 127 < 128 (every entry of TANH_BASE
        // is at most 127, asserted when the crate compiles); registers and
        // flags only otherwise (flags are not preserved: no
        // `preserves_flags`).
        unsafe {
            core::arch::asm!(
                "bic {a}, {y}, #0x80000000",
                "sub {p}, {a}, #0x3B800000",
                "usat {p}, #10, {p}, asr #17",
                "ldrb {p}, [{base}, {p}]",
                "ldr {n}, [{next}, {p}, lsl #2]",
                "cmp {a}, {n}",
                "adc {p}, {p}, #0",
                "eor {p}, {p}, {y}, asr #31",
                "sub {p}, {p}, {y}, asr #31",
                y = in(reg) y,
                base = in(reg) base.as_ptr(),
                next = in(reg) next.as_ptr(),
                a = out(reg) _,
                n = out(reg) _,
                p = out(reg) p,
                options(pure, readonly, nostack),
            );
        }
        p as i16
    }

    /// One row over the first `cols8` columns (a multiple of 8, ≥ 8). The
    /// caller guarantees `row.len() ≥ cols8` and `h.len() ≥ cols8` with `h`
    /// word-aligned.
    pub(super) fn row1(row: &[u8], cols8: usize, h: &[i16]) -> i32 {
        let mut acc = 0i32;
        // SAFETY: reads row bytes [0, cols8) and the cols8 i16 of `h` as
        // words (LDRD: `h` is word-aligned, see `rows4`); register-only
        // otherwise.
        unsafe {
            core::arch::asm!(
                "1:",
                "ldrd {x0}, {x1}, [{xp}], #8",
                "ldr {w}, [{p}], #4",
                "sxtb16 {t}, {w}",
                "smlad {a}, {t}, {x0}, {a}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad {a}, {w}, {x1}, {a}",
                "ldrd {x0}, {x1}, [{xp}], #8",
                "ldr {w}, [{p}], #4",
                "sxtb16 {t}, {w}",
                "smlad {a}, {t}, {x0}, {a}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad {a}, {w}, {x1}, {a}",
                "cmp {xp}, {end}",
                "bne 1b",
                a = inout(reg) acc,
                p = inout(reg) row.as_ptr() => _,
                xp = inout(reg) h.as_ptr() => _,
                end = in(reg) h.as_ptr().wrapping_add(cols8),
                x0 = out(reg) _,
                x1 = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly),
            );
        }
        acc
    }
}

/// `y_r = f32(acc_r)·(s_r·s_x) + b_r` (`scales`, `bias`: LE f32 bytes).
pub fn rescale(acc: &[i32], scales: &[u8], bias: &[u8], s_x: f32, y: &mut [f32]) {
    for (r, (out, &a)) in y.iter_mut().zip(acc).enumerate() {
        *out = a as f32 * (f32_at(scales, r) * s_x) + f32_at(bias, r);
    }
}

/// `y_r = max(f32(acc_r)·(s_r·s_x) + b_r, 0)` (a relu layer's output,
/// before [`quantize`]).
pub fn rescale_relu(acc: &[i32], scales: &[u8], bias: &[u8], s_x: f32, y: &mut [f32]) {
    for (r, (out, &a)) in y.iter_mut().zip(acc).enumerate() {
        let v = a as f32 * (f32_at(scales, r) * s_x) + f32_at(bias, r);
        // Not `v.max(0.0)` (a libm call on the device); differs only for
        // v = −0.0, which this returns as +0.0: the same once quantized.
        *out = if v > 0.0 { v } else { 0.0 };
    }
}

/// A tanh layer's output, quantized for the next layer with the fixed
/// scale [`TANH_SCALE`]: `y_r = f32(acc_r)·(s_r·s_x) + b_r` and
/// `p_r = rne(127·tanh(y_r))` with the exact tanh ([`tanh_q`]; `|p_r| ≤ 127`),
/// stored in `q` as the input of a `rows`-wide layer. Returns
/// [`TANH_SCALE`].
pub fn requant_tanh<const N: usize>(
    acc: &[i32],
    scales: &[u8],
    bias: &[u8],
    s_x: f32,
    q: &mut QVec<N>,
) -> f32 {
    let rows = acc.len().min(N);
    let rows8 = rows - rows % BLOCK;
    // Groups of four rows of the packed part, stored as p0, p2, p1, p3.
    for (((h4, a4), s4), b4) in
        q.h.chunks_exact_mut(4)
            .zip(acc.chunks_exact(4))
            .zip(scales.chunks_exact(16))
            .zip(bias.chunks_exact(16))
            .take(rows8 / 4)
    {
        if let ([h0, h2, h1, h3], &[a0, a1, a2, a3]) = (h4, a4) {
            let (s, b) = (f32x4(s4), f32x4(b4));
            *h0 = tanh_q(a0 as f32 * (s[0] * s_x) + b[0]);
            *h1 = tanh_q(a1 as f32 * (s[1] * s_x) + b[1]);
            *h2 = tanh_q(a2 as f32 * (s[2] * s_x) + b[2]);
            *h3 = tanh_q(a3 as f32 * (s[3] * s_x) + b[3]);
        }
    }
    // The last `rows % 8`, in place.
    for r in rows8..rows {
        if let (Some(hv), Some(&a)) = (q.h.get_mut(r), acc.get(r)) {
            *hv = tanh_q(a as f32 * (f32_at(scales, r) * s_x) + f32_at(bias, r));
        }
    }
    TANH_SCALE
}

/// Four little-endian f32 from 16 bytes.
#[inline(always)]
fn f32x4(b: &[u8]) -> [f32; 4] {
    let w: [u8; 16] = b.try_into().unwrap_or([0; 16]);
    let f = |i: usize| f32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
    [f(0), f(4), f(8), f(12)]
}

/// `rne(127·tanh(y))` with the exact tanh, in a dozen integer
/// instructions: `sign(y)·#{k : |y| ≥ T_k}` for the 127 thresholds
/// [`TANH_THRESHOLDS`].
///
/// The bits of a non-negative f32 order like its value, so the count works
/// on bits: `a = bits(|y|)`'s cell is
/// `i = clamp((a − bits(2⁻⁸)) >> 17, 0, 1023)` (64 cells per octave from
/// 2⁻⁸ up; cell 0 also holds everything below, cell 1023 everything above
/// 2⁸), `c = TANH_BASE[i]` counts the thresholds up to the start of cell
/// `i`, and since no cell holds more than one threshold (checked when the
/// crate compiles), `#{k : a ≥ T_k} = c + (a ≥ bits(T_{c+1}))`.
#[inline(always)]
pub fn tanh_q(y: f32) -> i16 {
    #[cfg(tinyppo_armv7em)]
    {
        dsp::tanh_q(y.to_bits(), &TANH_BASE, &TANH_NEXT)
    }
    #[cfg(not(tinyppo_armv7em))]
    {
        tanh_q_portable(y)
    }
}

/// [`tanh_q`] in portable Rust (what the host runs; the device's assembly
/// computes the same integers).
#[inline(always)]
pub fn tanh_q_portable(y: f32) -> i16 {
    let b = y.to_bits();
    let a = b & 0x7FFF_FFFF;
    let i = ((a as i32).wrapping_sub(TANH_LOW as i32) >> TANH_SHIFT).clamp(0, 1023) as usize;
    let c = TANH_BASE.get(i).copied().unwrap_or(127);
    let next = TANH_NEXT.get(usize::from(c)).copied().unwrap_or(u32::MAX);
    let p = i32::from(c) + i32::from(a >= next);
    (if (b as i32) < 0 { -p } else { p }) as i16
}

/// `T_k` (as f32 bits), `k = 1…127`: the smallest f32 `≥ atanh((2k − 1)/254)`,
/// where `127·tanh` crosses `k − ½`, so that for every f32 `a ≥ 0`,
/// `rne(127·tanh(a)) = #{k : a ≥ T_k}` (a tie would need `tanh(a)` rational,
/// impossible for `a ≠ 0`). Computed with 200-bit arithmetic (mpmath);
/// f64 `atanh` gives the same 127 values (the nearest f32 boundary is
/// 4e-10 away, relatively), which is how `tests/tests/runtime_quant.rs`
/// re-derives them. `T_1 ≈ 0.0039370`, `T_127 ≈ 3.1142557`.
pub const TANH_THRESHOLDS: [u32; 127] = [
    0x3B810230, 0x3C418554, 0x3CA147DB, 0x3CE1D22B, 0x3D1131D5, 0x3D317F32, 0x3D51D236, 0x3D722BEB,
    0x3D8946AE, 0x3D997BCB, 0x3DA9B5D2, 0x3DB9F54C, 0x3DCA3AC3, 0x3DDA86C0, 0x3DEAD9CF, 0x3DFB347D,
    0x3E05CBAC, 0x3E0E0179, 0x3E163BEC, 0x3E1E7B52, 0x3E26BFF3, 0x3E2F0A1D, 0x3E375A1B, 0x3E3FB03E,
    0x3E480CD3, 0x3E50702C, 0x3E58DA9C, 0x3E614C76, 0x3E69C60F, 0x3E7247C0, 0x3E7AD1E0, 0x3E81B266,
    0x3E86006F, 0x3E8A533C, 0x3E8EAAFC, 0x3E9307E2, 0x3E976A21, 0x3E9BD1ED, 0x3EA03F7C, 0x3EA4B304,
    0x3EA92CBE, 0x3EADACE5, 0x3EB233B4, 0x3EB6C169, 0x3EBB5643, 0x3EBFF284, 0x3EC4966F, 0x3EC9424A,
    0x3ECDF65D, 0x3ED2B2F2, 0x3ED77855, 0x3EDC46D8, 0x3EE11ECB, 0x3EE60085, 0x3EEAEC5D, 0x3EEFE2B0,
    0x3EF4E3DE, 0x3EF9F04A, 0x3EFF085A, 0x3F02163D, 0x3F04AE8E, 0x3F074D59, 0x3F09F2DB, 0x3F0C9F54,
    0x3F0F5307, 0x3F120E39, 0x3F14D133, 0x3F179C40, 0x3F1A6FB2, 0x3F1D4BDC, 0x3F203116, 0x3F231FBE,
    0x3F261834, 0x3F291AE0, 0x3F2C282F, 0x3F2F4093, 0x3F326486, 0x3F359488, 0x3F38D123, 0x3F3C1AE5,
    0x3F3F726A, 0x3F42D854, 0x3F464D52, 0x3F49D21E, 0x3F4D677F, 0x3F510E4A, 0x3F54C764, 0x3F5893C1,
    0x3F5C746A, 0x3F606A7C, 0x3F64772A, 0x3F689BC2, 0x3F6CD9AD, 0x3F713275, 0x3F75A7C6, 0x3F7A3B76,
    0x3F7EEF87, 0x3F81E317, 0x3F8460EE, 0x3F86F2A2, 0x3F8999B1, 0x3F8C57C9, 0x3F8F2EC7, 0x3F9220C7,
    0x3F95302A, 0x3F985FA4, 0x3F9BB24C, 0x3F9F2BAF, 0x3FA2CFEB, 0x3FA6A3CC, 0x3FAAACF9, 0x3FAEF225,
    0x3FB37B5F, 0x3FB8526C, 0x3FBD8355, 0x3FC31D29, 0x3FC93311, 0x3FCFDDFB, 0x3FD73F2D, 0x3FDF8473,
    0x3FE8EF59, 0x3FF3E26D, 0x40007E02, 0x4008A98B, 0x40138E90, 0x402407C1, 0x40474FF7,
];

/// `bits(2⁻⁸)`: start of cell 1 of the tanh table.
const TANH_LOW: u32 = 0x3B80_0000;
/// 64 cells per octave: `23 − 6` mantissa bits dropped.
const TANH_SHIFT: u32 = 17;
const TANH_CELLS: usize = 1024;

/// `TANH_NEXT[c] = T_{c+1}`, the threshold above level `c` (`u32::MAX` for
/// 127: never reached).
static TANH_NEXT: [u32; 128] = {
    let mut t = [u32::MAX; 128];
    let mut c = 0;
    while c < 127 {
        t[c] = TANH_THRESHOLDS[c];
        c += 1;
    }
    t
};

/// `TANH_BASE[i] = #{k : T_k ≤ start of cell i}`; cell `i ≥ 1` starts at
/// `bits(2⁻⁸) + i·2¹⁷`, cell 0 at 0.
static TANH_BASE: [u8; TANH_CELLS] = {
    let mut t = [0u8; TANH_CELLS];
    let mut i = 0;
    while i < TANH_CELLS {
        let start = cell_start(i);
        let mut c = 0;
        while c < 127 && TANH_THRESHOLDS[c] <= start {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

const fn cell_start(i: usize) -> u32 {
    if i == 0 {
        0
    } else {
        TANH_LOW + ((i as u32) << TANH_SHIFT)
    }
}

// The table's premises, checked when the crate compiles: the thresholds
// increase, none lies in cell 0's stretch below 2⁻⁸, and no cell holds
// two (so one comparison finishes the count).
const _: () = {
    assert!(TANH_THRESHOLDS[0] > TANH_LOW, "T_1 must lie above 2^-8");
    let mut k = 1;
    while k < 127 {
        assert!(
            TANH_THRESHOLDS[k - 1] < TANH_THRESHOLDS[k],
            "thresholds must increase"
        );
        k += 1;
    }
    assert!(
        TANH_THRESHOLDS[126] < cell_start(TANH_CELLS - 1),
        "last cell must be saturated"
    );
    // TANH_BASE counts at most 127 thresholds: a valid TANH_NEXT index.
    let mut j = 0;
    while j < TANH_CELLS {
        assert!(TANH_BASE[j] <= 127);
        j += 1;
    }
    let mut i = 0;
    while i + 1 < TANH_CELLS {
        // At most one threshold in [start(i), start(i+1)).
        let (start, end) = (cell_start(i), cell_start(i + 1));
        let mut n = 0;
        let mut k = 0;
        while k < 127 {
            if TANH_THRESHOLDS[k] > start && TANH_THRESHOLDS[k] < end {
                n += 1;
            }
            k += 1;
        }
        assert!(n <= 1, "two thresholds in one cell");
        i += 1;
    }
};
