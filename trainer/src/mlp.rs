//! Multi-layer perceptron with a hand-written backward pass.
//!
//! Layer `l` maps a batch `A_{l−1}` of shape `(B, n_{l−1})` to
//! `Z_l = A_{l−1} · W_lᵀ + b_l` of shape `(B, n_l)`, with `W_l` of shape
//! `(n_l, n_{l−1})` (row = output unit, as in the exported blob) and
//! `A_l = act(Z_l)` for hidden layers (tanh or relu); the last layer is linear.
//!
//! Backward, given `∂L/∂Z_l` (shape `(B, n_l)`):
//! `∂L/∂W_l = (∂L/∂Z_l)ᵀ · A_{l−1}`, `∂L/∂b_l = Σ_batch ∂L/∂Z_l`,
//! `∂L/∂A_{l−1} = ∂L/∂Z_l · W_l`, and through the activation
//! `∂L/∂Z_{l−1} = ∂L/∂A_{l−1} ⊙ act'(Z_{l−1})` with `tanh' = 1 − A²`,
//! `relu' = 1[Z > 0]`.
//!
//! Parameters live in one flat `&[f32]` (per layer: `W` row-major, then `b`)
//! so that the optimizer, gradient clipping and checkpoints work on plain
//! slices; gradients use the same layout.
//!
//! On x86-64 with AVX2 and FMA the products run on the kernels of
//! [`gemm`] (with the bias, activation and activation derivative fused
//! in); elsewhere on ndarray's `general_mat_mul`, with direct dot products
//! for batches of at most [`SMALL_BATCH`] rows.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "x86_64")]
pub mod gemm;

/// Hidden-layer nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    /// Hyperbolic tangent.
    Tanh,
    /// Rectified linear unit.
    Relu,
}

/// The shape of an MLP: layer sizes `[in, h1, …, out]` and activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mlp {
    /// `[in, h1, …, hk, out]`.
    pub sizes: Vec<usize>,
    /// Hidden activation.
    pub act: Act,
}

/// Activations kept from the forward pass for the backward pass.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    /// `A_0 = input, A_1, …, A_L = output` (hidden ones after activation).
    pub acts: Vec<Array2<f32>>,
    /// Scratch gradients w.r.t. each layer's input.
    grads: Vec<Array2<f32>>,
    /// Scratch for [`Mlp::transpose_weights`].
    wt: Vec<f32>,
}

impl Mlp {
    /// An MLP `in → hidden… → out`.
    pub fn new(input: usize, hidden: &[usize], output: usize, act: Act) -> Self {
        let mut sizes = vec![input];
        sizes.extend_from_slice(hidden);
        sizes.push(output);
        Mlp { sizes, act }
    }

    /// Number of layers (weight matrices).
    pub fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Input width.
    pub fn input(&self) -> usize {
        self.sizes[0]
    }

    /// Output width.
    pub fn output(&self) -> usize {
        *self.sizes.last().expect("an MLP has at least one size")
    }

    /// Total number of parameters.
    pub fn n_params(&self) -> usize {
        self.sizes.windows(2).map(|w| w[1] * w[0] + w[1]).sum()
    }

    /// `(offset of W, offset of b, rows, cols)` of layer `l` in the flat buffer.
    pub fn layer_offsets(&self, l: usize) -> (usize, usize, usize, usize) {
        let mut off = 0;
        for w in self.sizes.windows(2).take(l) {
            off += w[1] * w[0] + w[1];
        }
        let (cols, rows) = (self.sizes[l], self.sizes[l + 1]);
        (off, off + rows * cols, rows, cols)
    }

    /// Views of `W_l` (rows × cols) and `b_l` in `params`.
    pub fn layer<'p>(
        &self,
        params: &'p [f32],
        l: usize,
    ) -> (ArrayView2<'p, f32>, ArrayView1<'p, f32>) {
        let (ow, ob, rows, cols) = self.layer_offsets(l);
        let w = ArrayView2::from_shape((rows, cols), &params[ow..ob]).expect("layer shape");
        let b = ArrayView1::from(&params[ob..ob + rows]);
        (w, b)
    }

    fn layer_mut<'p>(
        &self,
        params: &'p mut [f32],
        l: usize,
    ) -> (ArrayViewMut2<'p, f32>, ArrayViewMut1<'p, f32>) {
        let (ow, ob, rows, cols) = self.layer_offsets(l);
        let (w, rest) = params[ow..ob + rows].split_at_mut(ob - ow);
        let w = ArrayViewMut2::from_shape((rows, cols), w).expect("layer shape");
        (w, ArrayViewMut1::from(rest))
    }

    /// Forward pass on a batch `x` of shape `(B, in)`; returns the output
    /// `(B, out)` (a view into the cache).
    pub fn forward<'c>(
        &self,
        params: &[f32],
        x: ArrayView2<f32>,
        cache: &'c mut Cache,
    ) -> ArrayView2<'c, f32> {
        self.load_input(x, cache);
        #[cfg(target_arch = "x86_64")]
        if simd::avx2_fma() {
            let mut wt = std::mem::take(&mut cache.wt);
            self.transpose_weights(params, &mut wt);
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            unsafe { self.layers_avx2(params, &wt, &mut cache.acts) };
            cache.wt = wt;
            return cache.acts[self.n_layers()].view();
        }
        self.layers_forward(params, cache);
        cache.acts[self.n_layers()].view()
    }

    /// The parameters prepared for many forward passes with the same
    /// weights ([`Prepared::forward`]).
    pub fn prepare<'a>(&'a self, params: &'a [f32]) -> Prepared<'a> {
        let mut wt = None;
        #[cfg(target_arch = "x86_64")]
        if simd::avx2_fma() {
            let mut t = Vec::new();
            self.transpose_weights(params, &mut t);
            wt = Some(t);
        }
        Prepared {
            mlp: self,
            params,
            wt,
        }
    }

    /// Sizes the cache's buffers for a batch of `x.nrows()` rows (keeping
    /// them when the size is unchanged) and copies `x` into `A_0`.
    fn load_input(&self, x: ArrayView2<f32>, cache: &mut Cache) {
        let batch = x.nrows();
        let n = self.sizes.len();
        if cache.acts.len() != n || cache.acts[0].nrows() != batch {
            cache.acts = self
                .sizes
                .iter()
                .map(|&s| Array2::zeros((batch, s)))
                .collect();
            cache.grads = self
                .sizes
                .iter()
                .map(|&s| Array2::zeros((batch, s)))
                .collect();
        }
        cache.acts[0].assign(&x);
    }

    /// `wt` = the parameters with each `W_l` transposed in place (biases
    /// left zero): the right-hand operands of the AVX2 forward product.
    #[cfg(target_arch = "x86_64")]
    fn transpose_weights(&self, params: &[f32], wt: &mut Vec<f32>) {
        wt.resize(params.len(), 0.0);
        for l in 0..self.n_layers() {
            let (ow, ob, rows, cols) = self.layer_offsets(l);
            // Layers of fewer than 8 outputs use W itself (`gemm::a_bt`).
            if rows >= 8 {
                gemm::transpose(&params[ow..ob], (rows, cols), &mut wt[ow..ob]);
            }
        }
    }

    /// The layer loop of [`Mlp::forward`] without AVX2.
    fn layers_forward(&self, params: &[f32], cache: &mut Cache) {
        let batch = cache.acts[0].nrows();
        for l in 0..self.n_layers() {
            let (w, b) = self.layer(params, l);
            let (prev, next) = cache.acts.split_at_mut(l + 1);
            let (a_prev, z) = (&prev[l], &mut next[0]);
            // Z = A_prev · Wᵀ, then + b row-wise. Rollouts run a handful of
            // rows at a time, where gemm's packing costs more than the
            // product: use direct dot products there.
            if batch <= SMALL_BATCH {
                small_matmul_t(a_prev.view(), w, z);
            } else {
                general_mat_mul(1.0, a_prev, &w.t(), 0.0, z);
            }
            let hidden = l + 1 < self.n_layers();
            let bias = b.as_slice().expect("contiguous bias");
            let zs = z.as_slice_mut().expect("contiguous activations");
            for row in zs.chunks_exact_mut(bias.len()) {
                self.bias_act(row, bias, hidden);
            }
        }
    }

    /// `row += bias`, then the activation for hidden layers.
    #[inline(always)]
    fn bias_act(&self, row: &mut [f32], bias: &[f32], hidden: bool) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        if hidden {
            match self.act {
                Act::Tanh => row.iter_mut().for_each(|v| *v = fast_tanh(*v)),
                Act::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
        }
    }

    /// The layer loop of [`Mlp::forward`] with AVX2 and FMA, on the
    /// [`gemm`] kernels with the bias and activation fused into them; `wt`
    /// from [`Mlp::transpose_weights`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn layers_avx2(&self, params: &[f32], wt: &[f32], acts: &mut [Array2<f32>]) {
        let batch = acts[0].nrows();
        for l in 0..self.n_layers() {
            let (ow, ob, rows, cols) = self.layer_offsets(l);
            let (prev, next) = acts.split_at_mut(l + 1);
            let a_prev = prev[l].as_slice().expect("contiguous activations");
            let z = next[0].as_slice_mut().expect("contiguous activations");
            let hidden = l + 1 < self.n_layers();
            let bias = &params[ob..ob + rows];
            let epi = |_, row: &mut [f32]| self.bias_act(row, bias, hidden);
            // Z = A_prev · Wᵀ, or by dot products with the rows of W for a
            // few outputs.
            if rows < 8 {
                gemm::a_bt(a_prev, &params[ow..ob], (batch, cols, rows), z, epi);
            } else {
                gemm::a_b(a_prev, &wt[ow..ob], (batch, cols, rows), z, epi);
            }
        }
    }

    /// Backward pass: given `dout = ∂L/∂output` (shape `(B, out)`) for the
    /// batch of the last [`Mlp::forward`] with this cache, **adds**
    /// `∂L/∂θ` into `grad` (same layout as the parameters).
    pub fn backward(
        &self,
        params: &[f32],
        cache: &mut Cache,
        dout: ArrayView2<f32>,
        grad: &mut [f32],
    ) {
        let n = self.sizes.len();
        cache.grads[n - 1].assign(&dout);
        #[cfg(target_arch = "x86_64")]
        if simd::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            unsafe { self.backward_avx2(params, cache, grad) };
            return;
        }
        for l in (0..self.n_layers()).rev() {
            let (w, _) = self.layer(params, l);
            let (gw, mut gb) = self.layer_mut(grad, l);
            let (lower, upper) = cache.grads.split_at_mut(l + 1);
            let dz = &upper[0];
            let a_prev = &cache.acts[l];
            // ∂L/∂W += dZᵀ · A_prev ; ∂L/∂b += Σ_rows dZ
            let mut gw = gw;
            general_mat_mul(1.0, &dz.t(), a_prev, 1.0, &mut gw);
            gb += &dz.sum_axis(Axis(0));
            if l == 0 {
                break;
            }
            // ∂L/∂A_prev = dZ · W, then through the activation of layer l−1.
            let da = &mut lower[l];
            general_mat_mul(1.0, dz, &w, 0.0, da);
            match self.act {
                Act::Tanh => ndarray::Zip::from(da)
                    .and(a_prev)
                    .for_each(|g, &a| *g *= 1.0 - a * a),
                Act::Relu => ndarray::Zip::from(da).and(a_prev).for_each(|g, &a| {
                    if a <= 0.0 {
                        *g = 0.0
                    }
                }),
            }
        }
    }

    /// The layer loop of [`Mlp::backward`] on the [`gemm`] kernels, with
    /// the activation's derivative fused into the `dA` product.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn backward_avx2(&self, params: &[f32], cache: &mut Cache, grad: &mut [f32]) {
        let batch = cache.acts[0].nrows();
        for l in (0..self.n_layers()).rev() {
            let (ow, ob, rows, cols) = self.layer_offsets(l);
            let (gw, gb) = grad[ow..ob + rows].split_at_mut(ob - ow);
            let (lower, upper) = cache.grads.split_at_mut(l + 1);
            let dz = upper[0].as_slice().expect("contiguous gradients");
            let a_prev = cache.acts[l].as_slice().expect("contiguous activations");
            // ∂L/∂W += dZᵀ · A_prev ; ∂L/∂b += Σ_rows dZ
            gemm::add_at_b(dz, a_prev, (batch, rows, cols), gw);
            gemm::add_col_sums(dz, (batch, rows), gb);
            if l == 0 {
                break;
            }
            // ∂L/∂A_prev = dZ · W, then through the activation of layer l−1.
            let da = lower[l].as_slice_mut().expect("contiguous gradients");
            let act = self.act;
            gemm::a_b(dz, &params[ow..ob], (batch, rows, cols), da, |i, row| {
                let a = &a_prev[i * cols..(i + 1) * cols];
                match act {
                    Act::Tanh => row.iter_mut().zip(a).for_each(|(g, &a)| *g *= 1.0 - a * a),
                    Act::Relu => row.iter_mut().zip(a).for_each(|(g, &a)| {
                        if a <= 0.0 {
                            *g = 0.0
                        }
                    }),
                }
            });
        }
    }

    /// Forward-mode derivative of the last [`Mlp::forward`] (the cache's
    /// batch) along a direction `dparams` in parameter space: `J v`, the
    /// change of every output per unit step along `v`, shape `(B, out)`.
    ///
    /// With `T_l` the tangent of `A_l` (`T_0 = 0`: the input does not
    /// depend on θ): `dZ_l = T_{l−1}·W_lᵀ + A_{l−1}·dW_lᵀ + db_l`, and
    /// `T_l = act'(Z_l) ⊙ dZ_l` (`1 − A²` for tanh, `1[A > 0]` for relu)
    /// for hidden layers, `T_L = dZ_L` for the linear output. Used with
    /// [`Mlp::backward`] (`Jᵀ w`) for TRPO's Fisher–vector products.
    pub fn jvp(&self, params: &[f32], dparams: &[f32], cache: &Cache) -> Array2<f32> {
        let mut t: Option<Array2<f32>> = None;
        for l in 0..self.n_layers() {
            let (w, _) = self.layer(params, l);
            let (dw, db) = self.layer(dparams, l);
            let a_prev = &cache.acts[l];
            let mut dz = a_prev.dot(&dw.t());
            dz += &db;
            if let Some(tp) = &t {
                general_mat_mul(1.0, tp, &w.t(), 1.0, &mut dz);
            }
            if l + 1 < self.n_layers() {
                let a = &cache.acts[l + 1];
                match self.act {
                    Act::Tanh => ndarray::Zip::from(&mut dz)
                        .and(a)
                        .for_each(|d, &a| *d *= 1.0 - a * a),
                    Act::Relu => ndarray::Zip::from(&mut dz).and(a).for_each(|d, &a| {
                        if a <= 0.0 {
                            *d = 0.0
                        }
                    }),
                }
            }
            t = Some(dz);
        }
        t.unwrap_or_else(|| Array2::zeros((cache.acts[0].nrows(), self.output())))
    }

    /// Gradient with respect to the input of the last forward pass (valid
    /// after [`Mlp::backward`] has run down to layer 0 — used by tests).
    pub fn input_grad(&self, params: &[f32], cache: &Cache) -> Array2<f32> {
        let (w, _) = self.layer(params, 0);
        cache.grads[1].dot(&w)
    }

    /// Orthogonal initialization (Saxe et al.; CleanRL's `layer_init`):
    /// each `W_l` is a random (semi-)orthogonal matrix times `gain`, biases 0.
    /// Hidden layers use `hidden_gain`, the last layer `out_gain`.
    pub fn init_orthogonal<R: rand::Rng>(
        &self,
        params: &mut [f32],
        hidden_gain: f32,
        out_gain: f32,
        rng: &mut R,
    ) {
        for l in 0..self.n_layers() {
            let gain = if l + 1 == self.n_layers() {
                out_gain
            } else {
                hidden_gain
            };
            let (mut w, mut b) = self.layer_mut(params, l);
            let q = orthogonal(w.nrows(), w.ncols(), rng);
            w.assign(&(q * gain));
            b.fill(0.0);
        }
    }
}

/// An MLP's parameters prepared for many forward passes with the same
/// weights: each `W_l` transposed once (for the AVX2 product) instead of
/// on every pass. Rollouts run thousands of forward passes of a few rows
/// between two updates, where the transposes cost a third of the pass.
pub struct Prepared<'a> {
    mlp: &'a Mlp,
    params: &'a [f32],
    /// From [`Mlp::transpose_weights`]; `None` without AVX2.
    wt: Option<Vec<f32>>,
}

impl Prepared<'_> {
    /// [`Mlp::forward`] with the prepared parameters (the same results).
    pub fn forward<'c>(&self, x: ArrayView2<f32>, cache: &'c mut Cache) -> ArrayView2<'c, f32> {
        let mlp = self.mlp;
        mlp.load_input(x, cache);
        match &self.wt {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `wt` is only made when the CPU supports AVX2 and FMA.
            Some(wt) => unsafe { mlp.layers_avx2(self.params, wt, &mut cache.acts) },
            _ => mlp.layers_forward(self.params, cache),
        }
        cache.acts[mlp.n_layers()].view()
    }
}

/// Batches up to this many rows use [`small_matmul_t`] instead of gemm.
pub const SMALL_BATCH: usize = 16;

#[cfg(target_arch = "x86_64")]
pub(crate) use simd::avx2_fma;

/// Run-time CPU feature detection for the multiversioned loops.
mod simd {
    /// True when the CPU has AVX2 and FMA (cached after the first call).
    #[cfg(target_arch = "x86_64")]
    pub fn avx2_fma() -> bool {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// `Σ a_i b_i` with one 8-lane FMA accumulator.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA ([`avx2_fma`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n <= len of both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                )
            };
            acc = _mm256_fmadd_ps(x, y, acc);
            i += 8;
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut s = (lanes[0] + lanes[4])
            + (lanes[1] + lanes[5])
            + (lanes[2] + lanes[6])
            + (lanes[3] + lanes[7]);
        for (x, y) in a[i..n].iter().zip(&b[i..n]) {
            s += x * y;
        }
        s
    }
}

/// `z = a · wᵀ` by direct dot products (rows of `a` against rows of `w`),
/// eight partial sums per dot so the compiler can vectorize.
#[inline(always)]
fn small_matmul_t(a: ArrayView2<f32>, w: ArrayView2<f32>, z: &mut Array2<f32>) {
    let w = w.as_standard_layout();
    let cols = w.ncols();
    let ws = w.as_slice().expect("standard layout");
    for (a_row, mut z_row) in a.rows().into_iter().zip(z.rows_mut()) {
        let a_row = a_row.to_slice().expect("contiguous row");
        for (zv, w_row) in z_row.iter_mut().zip(ws.chunks_exact(cols)) {
            *zv = dot(a_row, w_row);
        }
    }
}

/// `Σ a_i b_i` with eight independent accumulators (one 8-lane vector).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x: &[f32; 8] = x.try_into().expect("chunk of 8");
        let y: &[f32; 8] = y.try_into().expect("chunk of 8");
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// `tanh` as the device computes it: [`tinyppo_runtime::math::tanh`], a
/// [13/6] rational minimax approximation (max error ≈ 3.5e-7 against f64
/// `tanh`), branch-free so LLVM vectorizes the loops over it. The trainer
/// evaluates ~10⁸ activations per run (glibc's `tanhf` costs several times
/// more), and sharing the function means the trainer's forward pass and
/// the runtime's f32 forward pass apply the same activation, bit for bit.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    tinyppo_runtime::math::tanh(x)
}

/// A `rows × cols` matrix with orthonormal rows (if rows ≤ cols) or columns
/// (otherwise): QR of a standard-normal matrix by modified Gram–Schmidt in
/// f64, with the sign correction that makes the distribution uniform (Haar).
pub fn orthogonal<R: rand::Rng>(rows: usize, cols: usize, rng: &mut R) -> Array2<f32> {
    let (n, k) = if rows >= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    // Columns of an n × k Gaussian matrix, orthonormalized.
    let mut a: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            (0..n)
                .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
                .collect()
        })
        .collect();
    for j in 0..k {
        for i in 0..j {
            let (qi, aj) = {
                let (lo, hi) = a.split_at_mut(j);
                (&lo[i], &mut hi[0])
            };
            let dot: f64 = qi.iter().zip(aj.iter()).map(|(x, y)| x * y).sum();
            aj.iter_mut().zip(qi).for_each(|(y, x)| *y -= dot * x);
        }
        let norm = a[j].iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        a[j].iter_mut().for_each(|v| *v /= norm);
    }
    let mut out = Array2::zeros((rows, cols));
    for (j, col) in a.iter().enumerate() {
        for (i, &v) in col.iter().enumerate() {
            if rows >= cols {
                out[[i, j]] = v as f32;
            } else {
                out[[j, i]] = v as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fast_tanh;

    #[test]
    fn fast_tanh_matches_f64_tanh() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4; // [-20, 20]
            let err = (fast_tanh(x) as f64 - (x as f64).tanh()).abs();
            worst = worst.max(err);
        }
        println!("fast_tanh worst abs error on [-20, 20]: {worst:e}");
        assert!(worst < 5e-7, "fast_tanh error {worst}");
        assert_eq!(fast_tanh(f32::INFINITY), fast_tanh(100.0));
    }
}
