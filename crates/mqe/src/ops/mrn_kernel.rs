//! Inner loops of the MRN distance and its gradient, written lane-wise so that they vectorise, and
//! compiled twice: for the baseline target and with AVX2 (chosen at run time).

use super::bad_shape;

/// Keeps sqrt differentiable at a zero difference.
pub(crate) const SQRT_EPS: f32 = 1e-12;
/// Independent accumulators, so that the reductions vectorise without reassociating floats.
const LANES: usize = 8;

/// How a latent of `dim` entries splits into components.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub dim: usize,
    pub chunk: usize,
    pub half: usize,
    /// 1 / (components * sqrt(dim)): the mean over chunks and the 1/sqrt(D) scale.
    pub scale: f32,
}

impl Geometry {
    pub(crate) fn new(dim: usize, components: usize) -> candle_core::Result<Self> {
        if components == 0
            || dim == 0
            || !dim.is_multiple_of(components)
            || !(dim / components).is_multiple_of(2)
        {
            return Err(bad_shape(
                "mrn",
                format!(
                    "latent size {dim} must split into {components} chunks of an even size (each chunk is halved)"
                ),
            ));
        }
        let chunk = dim / components;
        Ok(Self {
            dim,
            chunk,
            half: chunk / 2,
            scale: 1.0 / (components as f32 * (dim as f32).sqrt()),
        })
    }
}

/// Max of `x - y` (-inf for an empty slice).
#[inline(always)]
fn max_diff_value(x: &[f32], y: &[f32]) -> f32 {
    let mut best = [f32::NEG_INFINITY; LANES];
    let full = x.len() / LANES * LANES;
    for (xs, ys) in x[..full]
        .chunks_exact(LANES)
        .zip(y[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let d = xs[l] - ys[l];
            best[l] = if d > best[l] { d } else { best[l] };
        }
    }
    let mut max = best
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for (a, b) in x[full..].iter().zip(&y[full..]) {
        max = if a - b > max { a - b } else { max };
    }
    max
}

/// Max of `x - y` and the first index where it is reached (None for an empty or all-NaN slice).
///
/// Two vectorised passes (max, then a compare-and-mask search) beat tracking the index in lanes.
#[inline(always)]
fn max_diff(x: &[f32], y: &[f32]) -> (f32, Option<usize>) {
    let max = max_diff_value(x, y);
    let full = x.len() / LANES * LANES;
    for (block, (xs, ys)) in x[..full]
        .chunks_exact(LANES)
        .zip(y[..full].chunks_exact(LANES))
        .enumerate()
    {
        let mut mask = 0u32;
        for l in 0..LANES {
            mask |= u32::from(xs[l] - ys[l] == max) << l;
        }
        if mask != 0 {
            return (max, Some(block * LANES + mask.trailing_zeros() as usize));
        }
    }
    let tail = x[full..]
        .iter()
        .zip(&y[full..])
        .position(|(a, b)| a - b == max);
    (max, tail.map(|k| full + k))
}

/// Sum of squares of `x - y`.
#[inline(always)]
fn sq_dist(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let full = x.len() / LANES * LANES;
    for (xs, ys) in x[..full]
        .chunks_exact(LANES)
        .zip(y[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let d = xs[l] - ys[l];
            acc[l] += d * d;
        }
    }
    let tail: f32 = x[full..]
        .iter()
        .zip(&y[full..])
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// d(x, y) for two latents of `geo.dim` entries.
#[inline(always)]
fn pair_distance(x: &[f32], y: &[f32], geo: &Geometry) -> f32 {
    let mut total = 0f32;
    for (xc, yc) in x.chunks_exact(geo.chunk).zip(y.chunks_exact(geo.chunk)) {
        let (xa, xs) = xc.split_at(geo.half);
        let (ya, ys) = yc.split_at(geo.half);
        total += max_diff_value(xa, ya).max(0.0) + (sq_dist(xs, ys) + SQRT_EPS).sqrt();
    }
    total * geo.scale
}

/// Adds `g * ∂d(x, y)/∂x` to `dx` and `g * ∂d(x, y)/∂y` (its negation) to `dy`.
/// The relu(max) term sends its gradient to the first maximum, and none when the max is <= 0.
#[inline(always)]
fn accumulate_pair_grad(
    x: &[f32],
    y: &[f32],
    g: f32,
    geo: &Geometry,
    dx: &mut [f32],
    dy: &mut [f32],
) {
    let g = g * geo.scale;
    let chunks = x.chunks_exact(geo.chunk).zip(y.chunks_exact(geo.chunk));
    let out_chunks = dx
        .chunks_exact_mut(geo.chunk)
        .zip(dy.chunks_exact_mut(geo.chunk));
    for ((xc, yc), (dxc, dyc)) in chunks.zip(out_chunks) {
        let (xa, xs) = xc.split_at(geo.half);
        let (ya, ys) = yc.split_at(geo.half);
        let (dxa, dxs) = dxc.split_at_mut(geo.half);
        let (dya, dys) = dyc.split_at_mut(geo.half);
        if let (max, Some(at)) = max_diff(xa, ya)
            && max > 0.0
        {
            dxa[at] += g;
            dya[at] -= g;
        }
        let coef = g / (sq_dist(xs, ys) + SQRT_EPS).sqrt();
        for (((ox, oy), a), b) in dxs.iter_mut().zip(dys.iter_mut()).zip(xs).zip(ys) {
            let v = coef * (a - b);
            *ox += v;
            *oy -= v;
        }
    }
}

/// `out[j] = d(x, others[j])` for each row of `others`.
#[inline(always)]
fn distance_row_impl(x: &[f32], others: &[f32], geo: &Geometry, out: &mut [f32]) {
    for (o, y) in out.iter_mut().zip(others.chunks_exact(geo.dim)) {
        *o = pair_distance(x, y, geo);
    }
}

/// For each row `others[j]` with `grads[j] != 0`: adds `grads[j] * ∂d(x, others[j])/∂x` to `dx`
/// and `grads[j] * ∂d(x, others[j])/∂others[j]` to row j of `d_others`.
#[inline(always)]
fn grad_pairs_impl(
    x: &[f32],
    others: &[f32],
    grads: &[f32],
    geo: &Geometry,
    dx: &mut [f32],
    d_others: &mut [f32],
) {
    let rows = others
        .chunks_exact(geo.dim)
        .zip(d_others.chunks_exact_mut(geo.dim));
    for ((other, d_other), &g) in rows.zip(grads) {
        if g != 0.0 {
            accumulate_pair_grad(x, other, g, geo, dx, d_other);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn distance_row_avx2(x: &[f32], others: &[f32], geo: &Geometry, out: &mut [f32]) {
    distance_row_impl(x, others, geo, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn grad_pairs_avx2(
    x: &[f32],
    others: &[f32],
    grads: &[f32],
    geo: &Geometry,
    dx: &mut [f32],
    d_others: &mut [f32],
) {
    grad_pairs_impl(x, others, grads, geo, dx, d_others)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// `out[j] = d(x, others[j])` for each row `others[j]` of `geo.dim` entries.
pub(crate) fn distance_row(x: &[f32], others: &[f32], geo: &Geometry, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the only requirement for calling a function compiled with AVX2 enabled is that the
        // CPU supports AVX2, which `has_avx2` has just checked; the function itself is safe Rust.
        return unsafe { distance_row_avx2(x, others, geo, out) };
    }
    distance_row_impl(x, others, geo, out)
}

/// For each row `others[j]` (of `geo.dim` entries) with `grads[j] != 0`: adds
/// `grads[j] * ∂d(x, others[j])/∂x` to `dx` and `grads[j] * ∂d(x, others[j])/∂others[j]` to row j
/// of `d_others`. Each pair's statistics are computed once for both gradients.
pub(crate) fn grad_pairs(
    x: &[f32],
    others: &[f32],
    grads: &[f32],
    geo: &Geometry,
    dx: &mut [f32],
    d_others: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as in `distance_row`: AVX2 support was just checked at run time.
        return unsafe { grad_pairs_avx2(x, others, grads, geo, dx, d_others) };
    }
    grad_pairs_impl(x, others, grads, geo, dx, d_others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_diff_finds_the_first_maximum_across_lanes_and_tail() {
        let y = vec![0f32; 19];
        let mut x = vec![-1f32; 19];
        x[3] = 2.0;
        x[11] = 2.0; // same value, later lane block: index 3 must win
        assert_eq!(max_diff(&x, &y), (2.0, Some(3)));
        x[18] = 5.0; // in the scalar tail
        assert_eq!(max_diff(&x, &y), (5.0, Some(18)));
        let x2: Vec<f32> = (0..19)
            .map(|i| if i == 9 || i == 1 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(max_diff(&x2, &y), (1.0, Some(1)));
        assert_eq!(max_diff(&[], &[]).1, None);
    }

    #[test]
    fn sq_dist_includes_the_tail() {
        let x: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let y = vec![0f32; 11];
        assert_eq!(
            sq_dist(&x, &y),
            (0..11).map(|i| (i * i) as f32).sum::<f32>()
        );
    }
}
