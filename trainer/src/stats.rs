//! Small statistics shared by the training loops and the studies.

/// Mean and population standard deviation, accumulated in f64 (of f32
/// samples or f64 returns; `(0, 0)` for none).
pub fn mean_std<T: Copy + Into<f64>>(v: &[T]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|&x| x.into()).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| {
            let d = x.into() - m;
            d * d
        })
        .sum::<f64>()
        / n;
    (m, var.sqrt())
}

/// `1 − Var(y − v)/Var(y)`: the fraction of the targets' variance the
/// predictions explain (NaN when the targets are constant).
pub fn explained_variance(targets: &[f32], values: &[f32]) -> f64 {
    let n = targets.len().max(1) as f64;
    let ym = targets.iter().map(|&x| x as f64).sum::<f64>() / n;
    let dm = targets
        .iter()
        .zip(values)
        .map(|(y, v)| (y - v) as f64)
        .sum::<f64>()
        / n;
    let var_y: f64 = targets.iter().map(|&y| (y as f64 - ym).powi(2)).sum();
    let var_d: f64 = targets
        .iter()
        .zip(values)
        .map(|(y, v)| ((y - v) as f64 - dm).powi(2))
        .sum();
    if var_y == 0.0 {
        f64::NAN
    } else {
        1.0 - var_d / var_y
    }
}
