//! The AVX2 matrix products of the MLP (`tinyppo_trainer::mlp::gemm`)
//! against ndarray's `general_mat_mul`, on shapes that exercise every
//! remainder of the register tiles (6 rows × 16 columns, 8-column and
//! masked tails, 64-row panels of the `dW` sum): batch `B ∈ {17, 63, 256,
//! 257}`, input width `∈ {1, 3, 7, 64, 65}`, output width `∈ {1, 2, 9, 64}`.
//!
//! An entry `c = Σ_p a_p b_p` may differ from the reference by rounding in
//! a different summation order, so the tolerance is relative to
//! `Σ_p |a_p b_p|` (`1e-5`, about a hundred times the f32 unit roundoff):
//! cancellation in the sum does not make a correct result fail.
//!
//! Then whole `Mlp` forward and backward passes (which use these kernels
//! on x86-64 with AVX2) against a plain ndarray reference at batch 257, and
//! the rollouts' `Mlp::prepare` path against `Mlp::forward`, bit for bit.

#![cfg(target_arch = "x86_64")]

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis};
use tinyppo_runtime::rng::DefaultRng;
use tinyppo_trainer::mlp::{fast_tanh, gemm, Act, Cache, Mlp};

use crate::trainer_util::{normal, random_params, rng};

const BATCHES: [usize; 4] = [17, 63, 256, 257];
const INPUTS: [usize; 5] = [1, 3, 7, 64, 65];
const OUTPUTS: [usize; 4] = [1, 2, 9, 64];
const RTOL: f32 = 1e-5;

fn random(r: &mut DefaultRng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| normal(r))
}

/// `|got − want| ≤ RTOL · Σ_p |l_p r_p|` entry by entry, where `scale`
/// holds those sums (`|L| · |R|`).
fn assert_close(what: &str, got: &Array2<f32>, want: &Array2<f32>, scale: &Array2<f32>) {
    assert_eq!(got.dim(), want.dim(), "{what}: shape");
    for ((idx, &g), (&w, &s)) in got.indexed_iter().zip(want.iter().zip(scale)) {
        assert!(
            (g - w).abs() <= RTOL * s.max(f32::MIN_POSITIVE),
            "{what}: entry {idx:?} is {g}, general_mat_mul gives {w} (scale {s})"
        );
    }
}

fn abs(a: ArrayView2<f32>) -> Array2<f32> {
    a.mapv(f32::abs)
}

/// `a · b` by ndarray, and `|a| · |b|`.
fn reference(a: ArrayView2<f32>, b: ArrayView2<f32>) -> (Array2<f32>, Array2<f32>) {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    let mut s = Array2::zeros((a.nrows(), b.ncols()));
    general_mat_mul(1.0, &abs(a), &abs(b), 0.0, &mut s);
    (c, s)
}

fn skip() -> bool {
    if !gemm::available() {
        eprintln!("no AVX2/FMA on this CPU: the gemm kernels are not used, nothing to test");
        return true;
    }
    false
}

#[test]
fn trainer_gemm_transpose() {
    if skip() {
        return;
    }
    let mut r = rng(1);
    for (rows, cols) in [
        (1, 1),
        (3, 64),
        (64, 3),
        (64, 64),
        (9, 65),
        (17, 8),
        (8, 16),
    ] {
        let s = random(&mut r, rows, cols);
        let mut t = vec![f32::NAN; rows * cols];
        gemm::transpose(s.as_slice().unwrap(), (rows, cols), &mut t);
        assert_eq!(
            t,
            s.t().iter().copied().collect::<Vec<_>>(),
            "{rows}×{cols}"
        );
    }
}

/// Forward `Z = A · Wᵀ`, both ways the MLP computes it: `a_b` with a
/// transposed `W` and `a_bt` with dot products; the epilogue sees each row
/// once, in order.
#[test]
fn trainer_gemm_forward_matches_ndarray() {
    if skip() {
        return;
    }
    let mut r = rng(2);
    for b in BATCHES {
        for k in INPUTS {
            for n in OUTPUTS {
                let a = random(&mut r, b, k);
                let w = random(&mut r, n, k);
                let (want, scale) = reference(a.view(), w.t());
                let mut wt = vec![0.0; k * n];
                gemm::transpose(w.as_slice().unwrap(), (n, k), &mut wt);
                let mut got = Array2::from_elem((b, n), f32::NAN);
                let mut next_row = 0;
                gemm::a_b(
                    a.as_slice().unwrap(),
                    &wt,
                    (b, k, n),
                    got.as_slice_mut().unwrap(),
                    |i, row| {
                        assert_eq!((i, row.len()), (next_row, n));
                        next_row += 1;
                    },
                );
                assert_eq!(next_row, b);
                assert_close(&format!("a_b {b}×{k}·{k}×{n}"), &got, &want, &scale);

                let mut got = Array2::from_elem((b, n), f32::NAN);
                gemm::a_bt(
                    a.as_slice().unwrap(),
                    w.as_slice().unwrap(),
                    (b, k, n),
                    got.as_slice_mut().unwrap(),
                    |_, _| {},
                );
                assert_close(&format!("a_bt {b}×{k}·({n}×{k})ᵀ"), &got, &want, &scale);
            }
        }
    }
}

/// Backward `dW += dZᵀ · A` (added to what `dW` held), `db += Σ_rows dZ`
/// and `dA = dZ · W`.
#[test]
fn trainer_gemm_backward_matches_ndarray() {
    if skip() {
        return;
    }
    let mut r = rng(3);
    for b in BATCHES {
        for k in INPUTS {
            for n in OUTPUTS {
                let a = random(&mut r, b, k);
                let dz = random(&mut r, b, n);
                let w = random(&mut r, n, k);

                let dw0 = random(&mut r, n, k);
                let (prod, scale) = reference(dz.t(), a.view());
                let want = &dw0 + &prod;
                let scale = scale + abs(dw0.view());
                let mut got = dw0.clone();
                gemm::add_at_b(
                    dz.as_slice().unwrap(),
                    a.as_slice().unwrap(),
                    (b, n, k),
                    got.as_slice_mut().unwrap(),
                );
                assert_close(&format!("dW += ({b}×{n})ᵀ·{b}×{k}"), &got, &want, &scale);

                let db0 = random(&mut r, 1, n);
                let want = &db0 + &dz.sum_axis(Axis(0));
                let scale = abs(db0.view()) + abs(dz.view()).sum_axis(Axis(0));
                let mut got = db0.clone();
                gemm::add_col_sums(dz.as_slice().unwrap(), (b, n), got.as_slice_mut().unwrap());
                assert_close(&format!("db += Σ rows of {b}×{n}"), &got, &want, &scale);

                let (want, scale) = reference(dz.view(), w.view());
                let mut got = Array2::from_elem((b, k), f32::NAN);
                gemm::a_b(
                    dz.as_slice().unwrap(),
                    w.as_slice().unwrap(),
                    (b, n, k),
                    got.as_slice_mut().unwrap(),
                    |_, _| {},
                );
                assert_close(&format!("dA = {b}×{n}·{n}×{k}"), &got, &want, &scale);
            }
        }
    }
}

/// The textbook forward and backward passes on ndarray (the layout of
/// [`Mlp`]): returns the output and adds the parameter gradient to `grad`.
fn reference_mlp(
    mlp: &Mlp,
    params: &[f32],
    x: &Array2<f32>,
    dout: &Array2<f32>,
    grad: &mut [f32],
) -> Array2<f32> {
    let mut acts = vec![x.clone()];
    for l in 0..mlp.n_layers() {
        let (w, b) = mlp.layer(params, l);
        let mut z = acts[l].dot(&w.t()) + b;
        if l + 1 < mlp.n_layers() {
            match mlp.act {
                Act::Tanh => z.mapv_inplace(fast_tanh),
                Act::Relu => z.mapv_inplace(|v| v.max(0.0)),
            }
        }
        acts.push(z);
    }
    let mut dz = dout.clone();
    for l in (0..mlp.n_layers()).rev() {
        let (ow, ob, rows, cols) = mlp.layer_offsets(l);
        let (w, _) = mlp.layer(params, l);
        let dw = dz.t().dot(&acts[l]);
        for (g, d) in grad[ow..ob].iter_mut().zip(dw.iter()) {
            *g += d;
        }
        for (g, d) in grad[ob..ob + rows]
            .iter_mut()
            .zip(dz.sum_axis(ndarray::Axis(0)))
        {
            *g += d;
        }
        let mut da = dz.dot(&w);
        assert_eq!(da.ncols(), cols);
        ndarray::Zip::from(&mut da)
            .and(&acts[l])
            .for_each(|g, &a| match mlp.act {
                Act::Tanh => *g *= 1.0 - a * a,
                Act::Relu => {
                    if a <= 0.0 {
                        *g = 0.0
                    }
                }
            });
        dz = da;
    }
    acts.pop().unwrap()
}

/// `Mlp::forward` and `Mlp::backward` on a batch of 257 (gemm tails in
/// every dimension) agree with the reference within float round-off.
#[test]
fn trainer_gemm_mlp_matches_reference() {
    for act in [Act::Tanh, Act::Relu] {
        let mut r = rng(4);
        let mlp = Mlp::new(7, &[65, 9], 2, act);
        let params = random_params(&mlp, 1.0, &mut r);
        let x = random(&mut r, 257, 7);
        let dout = random(&mut r, 257, 2);
        let start: Vec<f32> = (0..mlp.n_params()).map(|_| normal(&mut r)).collect();

        let mut want_grad = start.clone();
        let want = reference_mlp(&mlp, &params, &x, &dout, &mut want_grad);
        let mut cache = Cache::default();
        let got = mlp.forward(&params, x.view(), &mut cache).to_owned();
        let mut got_grad = start.clone();
        mlp.backward(&params, &mut cache, dout.view(), &mut got_grad);

        let out_scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * out_scale,
                "{act:?} output {g} vs {w}"
            );
        }
        let grad_scale = want_grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got_grad.iter().zip(&want_grad).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * grad_scale,
                "{act:?} gradient θ[{i}] {g} vs {w}"
            );
        }
    }
}

/// `Mlp::prepare(..).forward` (the rollouts' path, weights transposed once)
/// gives exactly `Mlp::forward`'s outputs, for a few rows and many, with
/// one cache reused across batch sizes.
#[test]
fn trainer_prepared_forward_is_forward() {
    let mut r = rng(5);
    let mlp = Mlp::new(3, &[64, 64], 1, Act::Tanh);
    let params = random_params(&mlp, 1.0, &mut r);
    let prepared = mlp.prepare(&params);
    let (mut c1, mut c2) = (Cache::default(), Cache::default());
    for b in [4, 1, 300, 4] {
        let x = random(&mut r, b, 3);
        let want = mlp.forward(&params, x.view(), &mut c1).to_owned();
        let got = prepared.forward(x.view(), &mut c2);
        assert_eq!(got, want, "batch {b}");
    }
}
