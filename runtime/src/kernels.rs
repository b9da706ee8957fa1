//! Dense-layer kernels: `y = W x + b` for f32 and int8 weights.
//!
//! Shapes: `W` is `rows × cols` row-major, `x` has `cols` elements, `y` has
//! `rows`. The slices come from a validated [`crate::Blob`], so their lengths
//! agree; the kernels iterate with `zip` and never index out of bounds.
//!
//! **int8.** Weights are stored as `w[r][c] ≈ s_r · q[r][c]` with
//! `q ∈ [−127, 127]`. The layer input is quantized once per call with one
//! dynamic scale `s_x = max_j |x_j| / 127`, `p_j = round(x_j / s_x)`, the
//! products are accumulated exactly in `i32` (|acc| ≤ 256·127² < 2³¹), and
//! `y_r = acc_r · (s_r · s_x) + b_r`. Converting each weight to f32 and
//! multiplying ("weight-only") would cost several instructions per
//! multiply-accumulate on a Cortex-M4; this costs one integer MAC.
//!
//! Error bound (used by the tests): with `|x_j − s_x p_j| ≤ s_x/2` and
//! `|w_rc − s_r q_rc| ≤ s_r/2`, `|y_r − ŷ_r| ≤ (s_r/2)·Σ_c |s_x p_c| + Σ_c |w_rc|·(s_x/2)`.

use crate::format::f32s;

/// `y = W x + b` with f32 weights (LE bytes).
#[inline]
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

/// Quantizes `x` into `q` with one symmetric scale; returns the scale
/// `s_x` (0 when `x` is all zeros, in which case `q` is all zeros).
#[inline]
pub fn quantize_input(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, &v| {
        let a = libm::fabsf(v);
        if a > m {
            a
        } else {
            m
        }
    });
    if amax == 0.0 {
        q.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let inv = 127.0 / amax;
    for (qv, &xv) in q.iter_mut().zip(x) {
        let t = xv * inv;
        // Round half away from zero; `as` saturates, so ±127.000x stays in range.
        let r = if t >= 0.0 { t + 0.5 } else { t - 0.5 };
        *qv = (r as i32).clamp(-127, 127) as i8;
    }
    amax / 127.0
}

/// `y = W x + b` with int8 weights, per-row scales and a quantized input
/// (`q`, `s_x` from [`quantize_input`]).
#[inline]
pub fn dense_i8(weights: &[u8], scales: &[u8], bias: &[u8], q: &[i8], s_x: f32, y: &mut [f32]) {
    let cols = q.len();
    if cols == 0 {
        return;
    }
    let rows = weights.chunks_exact(cols);
    for (((out, row), s), b) in y.iter_mut().zip(rows).zip(f32s(scales)).zip(f32s(bias)) {
        let acc = dot_i8(row, q);
        *out = acc as f32 * (s * s_x) + b;
    }
}

/// Exact `Σ_c w_c · p_c` in i32.
#[inline]
fn dot_i8(w: &[u8], p: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&wv, &pv) in w.iter().zip(p) {
        acc += (wv as i8 as i32) * (pv as i32);
    }
    acc
}
