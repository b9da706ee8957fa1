//! AVX2+FMA matrix products for the MLP's fixed, tiny shapes.
//!
//! The three products of a layer (`B` batch rows, `n` outputs, `k` inputs;
//! everything row-major) are all one form,
//!
//! ```text
//! C[i, j] (+)= Σ_p L[i·lm + p·lp] · R[p·ldr + j]
//! ```
//!
//! | product                | C          | L (strides i, p) | R (rows p)  | function     |
//! |------------------------|------------|------------------|-------------|--------------|
//! | forward `Z = A·Wᵀ`     | `Z` (B×n)  | `A` (k, 1)       | `Wᵀ` (k×n)  | [`a_b`]      |
//! | backward `dW += dZᵀ·A` | `dW` (n×k) | `dZ` (1, n)      | `A` (B×k)   | [`add_at_b`] |
//! | backward `dA = dZ·W`   | `dA` (B×k) | `dZ` (n, 1)      | `W` (n×k)   | [`a_b`]      |
//!
//! so one register-blocked kernel does all three: a tile of `MR = 6` rows
//! of `C` × 16 columns (two 8-lane vectors) lives in 12 accumulators
//! (enough independent FMA chains to hide the FMA latency); each step `p`
//! loads two vectors of row `p` of `R`, broadcasts the 6 `L` values and
//! issues 12 FMAs. No operand is packed: at these sizes everything is in
//! L1 or L2 already. Column remainders use a one-vector tile and, past
//! that, masked loads and stores; row remainders instantiate the tile with
//! fewer rows. The forward product needs `Wᵀ` ([`transpose`], 8 × 8 blocks
//! in registers: ≈ 1% of a 256-row pass, but a third of a 4-row rollout
//! pass, so rollouts transpose once, `Mlp::prepare`); outputs of fewer
//! than 8 columns (the last layer, `n = 1`) use dot products with the rows
//! of `W` instead ([`a_bt`]), where a masked tile would leave 7 of 8 lanes
//! idle, and a `dW` of fewer than 8 columns (3 inputs) is computed
//! transposed. `dW` sums over the batch in panels of `KC` = 64 rows so
//! that the panel of `A` stays in L1.
//!
//! Each row block of `C` goes through an epilogue right after it is
//! written, while it is in L1: the forward pass adds the bias and applies
//! the activation there, the backward pass multiplies by the activation's
//! derivative.
//!
//! Why not `matrixmultiply` (ndarray's `general_mat_mul`): it packs both
//! operands into panels on every call, which pays off for large matrices
//! but not at 256×64·64×64 and below. There it reaches ≈ 41·10⁹ FMA/s
//! (25 µs for 256×64·64×64, one core of the 2-core AMD EPYC dev machine)
//! against ≈ 55 here (18.5 µs, about the core's peak of two 8-lane FMAs per
//! cycle). In the training benchmark (the RLtools configuration, 307,200 steps, minibatch
//! 256, 3→64→64→1) its kernel and packing were half of the run; with these
//! kernels the updates went from ≈ 0.75 s to ≈ 0.5 s (see the git log).
//!
//! The summation order is fixed by the shapes (no threading, no run-time
//! choice besides the CPU check), so results are deterministic.

use std::arch::x86_64::*;

/// Rows of `C` per register tile.
const MR: usize = 6;
/// Batch rows per panel of the `dW` reduction (a 64-wide panel of `A` is 16 KiB).
const KC: usize = 64;

/// True when the kernels can run (AVX2 and FMA, detected once).
pub fn available() -> bool {
    super::simd::avx2_fma()
}

/// `c = a · b` with `a` of shape `(m, k)`, `b` `(k, n)` and `c` `(m, n)`;
/// then `epi(i, row_i_of_c)` for each row. The forward product `A · Wᵀ`
/// with `b = Wᵀ` ([`transpose`]), and the backward `dA = dZ · W`.
///
/// # Panics
/// If a slice is shorter than its shape or the CPU lacks AVX2/FMA
/// ([`available`]).
pub fn a_b(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    c: &mut [f32],
    mut epi: impl FnMut(usize, &mut [f32]),
) {
    assert!(available(), "gemm needs AVX2 and FMA");
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let op = Operands {
        l: a,
        lm: k,
        lp: 1,
        r: b,
        ldr: n,
        m,
        n,
        k,
    };
    // SAFETY: AVX2 and FMA are available (asserted above); `run` checks
    // the operands' bounds.
    unsafe { run(&op, c, false, &mut epi) }
}

/// `c = a · bᵀ` with `a` of shape `(m, k)`, `b` `(n, k)` and `c` `(m, n)`
/// by dot products of rows; then `epi(i, row_i_of_c)` for each row. Meant
/// for few columns (`n < 8`), where [`a_b`] would leave lanes idle.
///
/// # Panics
/// As [`a_b`].
pub fn a_bt(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    c: &mut [f32],
    epi: impl FnMut(usize, &mut [f32]),
) {
    assert!(available(), "gemm needs AVX2 and FMA");
    // SAFETY: AVX2 and FMA are available (asserted above).
    unsafe { a_bt_avx2(&a[..m * k], &b[..n * k], (m, k, n), &mut c[..m * n], epi) }
}

/// [`a_bt`] after its checks: groups of 8 rows of `a` against each row of
/// `b`, one accumulator per row, reduced together ([`hsum8`]); the last
/// `m % 8` rows by single dot products.
///
/// # Safety
/// AVX2 and FMA available; `a`, `b`, `c` hold exactly `m·k`, `n·k`, `m·n`.
#[target_feature(enable = "avx2,fma")]
unsafe fn a_bt_avx2(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    c: &mut [f32],
    mut epi: impl FnMut(usize, &mut [f32]),
) {
    // SAFETY: AVX2 is available (caller).
    let (k8, mask) = (k - k % 8, unsafe { tail_mask(k % 8) });
    let m8 = m - m % 8;
    for i0 in (0..m8).step_by(8) {
        for j in 0..n {
            let mut acc = [_mm256_setzero_ps(); 8];
            // SAFETY: rows i0..i0 + 8 ≤ m of `a` and row j < n of `b`,
            // columns p..p + 8 ≤ k (or the unmasked ones of the tail).
            unsafe {
                let (ap, bp) = (a.as_ptr().add(i0 * k), b.as_ptr().add(j * k));
                for p in (0..k8).step_by(8) {
                    let bv = _mm256_loadu_ps(bp.add(p));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(r * k + p)), bv, *acc);
                    }
                }
                if k8 < k {
                    let bv = _mm256_maskload_ps(bp.add(k8), mask);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_maskload_ps(ap.add(r * k + k8), mask);
                        *acc = _mm256_fmadd_ps(av, bv, *acc);
                    }
                }
            }
            let mut sums = [0.0f32; 8];
            // SAFETY: `sums` holds 8 floats.
            unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), hsum8(acc)) };
            for (r, &s) in sums.iter().enumerate() {
                c[(i0 + r) * n + j] = s;
            }
        }
        for i in i0..i0 + 8 {
            epi(i, &mut c[i * n..(i + 1) * n]);
        }
    }
    for i in m8..m {
        let row = &a[i * k..(i + 1) * k];
        for j in 0..n {
            // SAFETY: AVX2 and FMA are available (caller).
            c[i * n + j] = unsafe { super::simd::dot_avx2(row, &b[j * k..(j + 1) * k]) };
        }
        epi(i, &mut c[i * n..(i + 1) * n]);
    }
}

/// The lane sums of 8 vectors, as one vector (lane `r` = Σ lanes of `v[r]`).
///
/// # Safety
/// AVX2 available. (An `unsafe fn` only because safe `#[target_feature]`
/// functions need Rust 1.86 and the workspace's MSRV is 1.85; likewise
/// [`transpose8`] and [`tail_mask`].)
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn hsum8(v: [__m256; 8]) -> __m256 {
    // Pairwise sums within 128-bit halves, then the two halves added.
    let t0 = _mm256_hadd_ps(v[0], v[1]);
    let t1 = _mm256_hadd_ps(v[2], v[3]);
    let t2 = _mm256_hadd_ps(v[4], v[5]);
    let t3 = _mm256_hadd_ps(v[6], v[7]);
    let u0 = _mm256_hadd_ps(t0, t1);
    let u1 = _mm256_hadd_ps(t2, t3);
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(u0, u1),
        _mm256_permute2f128_ps::<0x31>(u0, u1),
    )
}

/// `c += aᵀ · b` with `a` of shape `(m, p)`, `b` `(m, q)` and `c` `(p, q)`:
/// a sum over the `m` rows, the backward `dW += dZᵀ · A`.
///
/// A narrow `c` (`q < 8`, the first layer's `dW` with 3 inputs) is
/// computed as `cᵀ = bᵀ · a` and added transposed: full vectors along `p`
/// instead of masked ones with 5 of 8 lanes idle.
///
/// # Panics
/// As [`a_b`].
pub fn add_at_b(a: &[f32], b: &[f32], (m, p, q): (usize, usize, usize), c: &mut [f32]) {
    assert!(available(), "gemm needs AVX2 and FMA");
    assert!(a.len() >= m * p && b.len() >= m * q && c.len() >= p * q);
    if q < 8 && p >= 8 {
        let mut ct = vec![0.0; q * p];
        add_at_b(b, a, (m, q, p), &mut ct);
        for (i, row) in c[..p * q].chunks_exact_mut(q).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v += ct[j * p + i];
            }
        }
        return;
    }
    let mut r0 = 0;
    while r0 < m {
        let kc = KC.min(m - r0);
        let op = Operands {
            l: &a[r0 * p..],
            lm: 1,
            lp: p,
            r: &b[r0 * q..],
            ldr: q,
            m: p,
            n: q,
            k: kc,
        };
        // SAFETY: AVX2 and FMA are available (asserted above); `run`
        // checks the operands' bounds.
        unsafe { run(&op, c, true, &mut |_, _| {}) };
        r0 += kc;
    }
}

/// `c[j] += Σ_i a[i, j]` for `a` of shape `(m, n)`: the bias gradient.
///
/// # Panics
/// As [`a_b`].
pub fn add_col_sums(a: &[f32], (m, n): (usize, usize), c: &mut [f32]) {
    assert!(available(), "gemm needs AVX2 and FMA");
    // SAFETY: AVX2 is available (asserted above).
    unsafe { add_col_sums_avx2(&a[..m * n], n, &mut c[..n]) }
}

/// [`add_col_sums`]: 64 columns at a time in eight vector accumulators
/// (adding each row straight into `c` chains every row's addition on the
/// previous one's store), then 8 at a time; a single column (`n = 1`, the
/// value head) as one contiguous sum; other columns one by one.
///
/// # Safety
/// AVX2 available; `a.len() = m·n`, `c.len() = n`.
#[target_feature(enable = "avx2,fma")]
unsafe fn add_col_sums_avx2(a: &[f32], n: usize, c: &mut [f32]) {
    let mut j0 = 0;
    while j0 + 64 <= n {
        // SAFETY: AVX2 is available (caller); columns j0..j0 + 64 ≤ n.
        unsafe { col_sums::<8>(a, n, j0, c) };
        j0 += 64;
    }
    while j0 + 8 <= n {
        // SAFETY: as above, columns j0..j0 + 8 ≤ n.
        unsafe { col_sums::<1>(a, n, j0, c) };
        j0 += 8;
    }
    if n == 1 {
        let mut acc = [0.0f32; 8];
        let chunks = a.chunks_exact(8);
        let rest = chunks.remainder();
        for ch in chunks {
            for (s, &x) in acc.iter_mut().zip(ch) {
                *s += x;
            }
        }
        let sum = acc.iter().sum::<f32>() + rest.iter().sum::<f32>();
        c[0] += sum;
        return;
    }
    for (j, cj) in c.iter_mut().enumerate().skip(j0) {
        *cj += a.iter().skip(j).step_by(n).sum::<f32>();
    }
}

/// Columns `j0..j0 + 8V` of [`add_col_sums_avx2`], in `V` accumulators.
///
/// # Safety
/// AVX2 available; `j0 + 8V ≤ n`, `a.len()` a multiple of `n`, `c.len() = n`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn col_sums<const V: usize>(a: &[f32], n: usize, j0: usize, c: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); V];
    for row in a.chunks_exact(n) {
        for (u, s) in acc.iter_mut().enumerate() {
            // SAFETY: columns j0 + 8u..j0 + 8u + 8 ≤ n of the row (caller).
            *s = _mm256_add_ps(*s, unsafe { _mm256_loadu_ps(row.as_ptr().add(j0 + 8 * u)) });
        }
    }
    for (u, s) in acc.iter().enumerate() {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *s) };
        for (cj, l) in c[j0 + 8 * u..j0 + 8 * u + 8].iter_mut().zip(lanes) {
            *cj += l;
        }
    }
}

/// `t = sᵀ` for `s` of shape `(rows, cols)` (`t` is `(cols, rows)`).
///
/// # Panics
/// As [`a_b`].
pub fn transpose(s: &[f32], (rows, cols): (usize, usize), t: &mut [f32]) {
    assert!(available(), "gemm needs AVX2 and FMA");
    // SAFETY: AVX2 is available (asserted above).
    unsafe { transpose_avx2(s, (rows, cols), t) }
}

/// [`transpose`]: 8 × 8 blocks transposed in registers, scalar copies at
/// the edges.
///
/// # Safety
/// AVX2 available.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_avx2(s: &[f32], (rows, cols): (usize, usize), t: &mut [f32]) {
    assert!(s.len() >= rows * cols && t.len() >= rows * cols);
    let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
    for r0 in (0..rb).step_by(8) {
        for c0 in (0..cb).step_by(8) {
            // SAFETY: rows r0..r0 + 8 ≤ rows and columns c0..c0 + 8 ≤ cols
            // of `s`, and the transposed block of `t`, are in bounds
            // (asserted above).
            unsafe {
                let mut x = [_mm256_setzero_ps(); 8];
                for (i, v) in x.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(s.as_ptr().add((r0 + i) * cols + c0));
                }
                for (i, v) in transpose8(x).into_iter().enumerate() {
                    _mm256_storeu_ps(t.as_mut_ptr().add((c0 + i) * rows + r0), v);
                }
            }
        }
    }
    for r in 0..rows {
        let c_start = if r < rb { cb } else { 0 };
        for c in c_start..cols {
            t[c * rows + r] = s[r * cols + c];
        }
    }
}

/// The transpose of an 8 × 8 block held as 8 row vectors.
///
/// # Safety
/// AVX2 available.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn transpose8(x: [__m256; 8]) -> [__m256; 8] {
    // Interleave pairs of rows, then pairs of pairs, then the 128-bit halves.
    let t0 = _mm256_unpacklo_ps(x[0], x[1]);
    let t1 = _mm256_unpackhi_ps(x[0], x[1]);
    let t2 = _mm256_unpacklo_ps(x[2], x[3]);
    let t3 = _mm256_unpackhi_ps(x[2], x[3]);
    let t4 = _mm256_unpacklo_ps(x[4], x[5]);
    let t5 = _mm256_unpackhi_ps(x[4], x[5]);
    let t6 = _mm256_unpacklo_ps(x[6], x[7]);
    let t7 = _mm256_unpackhi_ps(x[6], x[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `C[i, j] (+)= Σ_p L[i·lm + p·lp] · R[p·ldr + j]` for `i < m`, `j < n`,
/// `p < k`; `C` has row stride `n`.
struct Operands<'a> {
    l: &'a [f32],
    lm: usize,
    lp: usize,
    r: &'a [f32],
    ldr: usize,
    m: usize,
    n: usize,
    k: usize,
}

/// The blocked loop: row blocks of [`MR`], within each the column tiles,
/// then the epilogue on the block's rows. `accumulate` adds to `c` instead
/// of overwriting it.
///
/// # Safety
/// AVX2 and FMA available.
#[target_feature(enable = "avx2,fma")]
unsafe fn run(
    op: &Operands,
    c: &mut [f32],
    accumulate: bool,
    epi: &mut impl FnMut(usize, &mut [f32]),
) {
    let Operands { m, n, k, .. } = *op;
    if m == 0 || n == 0 {
        return;
    }
    // Every element the tiles touch lies in the slices.
    if k > 0 {
        assert!(
            (m - 1) * op.lm + (k - 1) * op.lp < op.l.len(),
            "L too short"
        );
        assert!((k - 1) * op.ldr + n <= op.r.len(), "R too short");
    }
    assert!(m * n <= c.len(), "C too short");
    let mut i0 = 0;
    while i0 < m {
        let mr = MR.min(m - i0);
        // SAFETY: AVX2/FMA available (caller); rows i0..i0 + mr < m are
        // within the bounds asserted above.
        unsafe {
            match mr {
                6 => row_block::<6>(op, c, i0, accumulate),
                5 => row_block::<5>(op, c, i0, accumulate),
                4 => row_block::<4>(op, c, i0, accumulate),
                3 => row_block::<3>(op, c, i0, accumulate),
                2 => row_block::<2>(op, c, i0, accumulate),
                _ => row_block::<1>(op, c, i0, accumulate),
            }
        }
        for i in i0..i0 + mr {
            epi(i, &mut c[i * n..(i + 1) * n]);
        }
        i0 += mr;
    }
}

/// Rows `i0..i0 + R` of `C`, all columns.
///
/// # Safety
/// AVX2 and FMA available; `i0 + R ≤ m` and the bounds checked in [`run`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_block<const R: usize>(op: &Operands, c: &mut [f32], i0: usize, accumulate: bool) {
    let n = op.n;
    let mut j0 = 0;
    // SAFETY (all tiles): columns j0..j0 + 16 (or 8, or the masked rest)
    // are < n, rows i0..i0 + R < m, as the caller guarantees.
    while j0 + 16 <= n {
        unsafe { tile::<R, 2, false>(op, c, i0, j0, accumulate) };
        j0 += 16;
    }
    if j0 + 8 <= n {
        unsafe { tile::<R, 1, false>(op, c, i0, j0, accumulate) };
        j0 += 8;
    }
    if j0 < n {
        unsafe { tile::<R, 1, true>(op, c, i0, j0, accumulate) };
    }
}

/// Lane mask selecting the first `len` (< 8) of 8 lanes.
///
/// # Safety
/// AVX2 available.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tail_mask(len: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), idx)
}

/// One `R × 8V` tile of `C` at `(i0, j0)`; with `MASKED`, the last vector
/// covers only the `n − j0 − 8(V−1)` (< 8) remaining columns.
///
/// # Safety
/// AVX2 and FMA available; rows `i0..i0 + R` and the tile's columns lie in
/// `C` and the operands satisfy the bounds checked in [`run`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize, const V: usize, const MASKED: bool>(
    op: &Operands,
    c: &mut [f32],
    i0: usize,
    j0: usize,
    accumulate: bool,
) {
    let n = op.n;
    let mask = if MASKED {
        // SAFETY: AVX2 is available (caller).
        unsafe { tail_mask(n - j0 - 8 * (V - 1)) }
    } else {
        _mm256_set1_epi32(-1)
    };
    let cp = c.as_mut_ptr();
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    if accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                // SAFETY: `cp + (i0+i)·n + j0 + 8v + lane` is inside `c`
                // for every row i < R and every lane accessed (all 8 of a
                // full vector, the unmasked ones of the last): the caller
                // guarantees the tile lies in C.
                unsafe {
                    let q = cp.add((i0 + i) * n + j0 + 8 * v);
                    *a = if MASKED && v + 1 == V {
                        _mm256_maskload_ps(q, mask)
                    } else {
                        _mm256_loadu_ps(q)
                    };
                }
            }
        }
    }
    let (lp, rp) = (op.l.as_ptr(), op.r.as_ptr());
    for p in 0..op.k {
        let mut r = [_mm256_setzero_ps(); V];
        for (v, rv) in r.iter_mut().enumerate() {
            // SAFETY: row p < k of R, columns j0 + 8v.. (masked past n): in
            // bounds by the check in `run`.
            let q = unsafe { rp.add(p * op.ldr + j0 + 8 * v) };
            *rv = if MASKED && v + 1 == V {
                // SAFETY: as above; masked lanes are not read.
                unsafe { _mm256_maskload_ps(q, mask) }
            } else {
                // SAFETY: as above, all 8 lanes are < n.
                unsafe { _mm256_loadu_ps(q) }
            };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: (i0 + i)·lm + p·lp < len of L by the check in `run`.
            let x = _mm256_set1_ps(unsafe { *lp.add((i0 + i) * op.lm + p * op.lp) });
            for (a, &rv) in row.iter_mut().zip(&r) {
                *a = _mm256_fmadd_ps(x, rv, *a);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            // SAFETY: as for the loads of `acc` above.
            unsafe {
                let p = cp.add((i0 + i) * n + j0 + 8 * v);
                if MASKED && v + 1 == V {
                    _mm256_maskstore_ps(p, mask, a);
                } else {
                    _mm256_storeu_ps(p, a);
                }
            }
        }
    }
}
