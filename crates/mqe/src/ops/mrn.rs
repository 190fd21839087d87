//! The MRN quasimetric (docs/mqe.md section 3), fused over all pairs or over matched rows.
//!
//! d(x, y) = mean over chunks c of [relu(max(first half of (x-y)_c)) + sqrt(|second half of (x-y)_c|^2 + 1e-12)] / sqrt(D)

use super::mrn_kernel::{Geometry, SQRT_EPS, distance_row, grad_pairs};
use super::{bad_shape, f32_slice, fast_path, items_per_task};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

const OP: &str = "mrn";
/// Sizes of a pairwise call: x `[e, b, dim]`, y `[e, m, dim]`.
#[derive(Clone, Copy, Debug)]
struct PairDims {
    e: usize,
    b: usize,
    m: usize,
}

impl PairDims {
    fn check(x: &[usize], y: &[usize], components: usize) -> candle_core::Result<(Self, Geometry)> {
        let (&[e, b, dx], &[ey, m, dy]) = (x, y) else {
            return Err(bad_shape(
                "mrn_pairwise",
                format!("x must be [E,B,D] and y [E,M,D], got {x:?} and {y:?}"),
            ));
        };
        if e != ey || dx != dy {
            return Err(bad_shape(
                "mrn_pairwise",
                format!("x {x:?} and y {y:?} disagree on E or D"),
            ));
        }
        Ok((Self { e, b, m }, Geometry::new(dx, components)?))
    }
}

struct Pairwise {
    components: usize,
}

impl CustomOp2 for Pairwise {
    fn name(&self) -> &'static str {
        "mrn_pairwise"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (p, geo) = PairDims::check(xl.dims(), yl.dims(), self.components)?;
        let (x, y) = (f32_slice(OP, xs, xl)?, f32_slice(OP, ys, yl)?);
        let mut out = vec![0f32; p.e * p.b * p.m];
        if p.m > 0 && geo.dim > 0 {
            out.par_chunks_mut(p.m)
                .zip(x.par_chunks(geo.dim))
                .enumerate()
                .for_each(|(row, (out_row, x_row))| {
                    let ens = row / p.b;
                    let y_ens = &y[ens * p.m * geo.dim..(ens + 1) * p.m * geo.dim];
                    distance_row(x_row, y_ens, &geo, out_row);
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((p.e, p.b, p.m))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (want_dx, want_dy) = (x.track_op(), y.track_op());
        let op = PairwiseBackward {
            components: self.components,
            want_dx,
            want_dy,
        };
        let flat = x.apply_op3_no_bwd(y, &grad, &op)?;
        split_grads(&flat, x, y, want_dx, want_dy)
    }
}

/// Cuts the flat `[dx (if wanted); dy (if wanted)]` result of a backward op into the two gradients.
fn split_grads(
    flat: &Tensor,
    x: &Tensor,
    y: &Tensor,
    want_dx: bool,
    want_dy: bool,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let dx_len = if want_dx { x.elem_count() } else { 0 };
    let dx = if want_dx {
        Some(flat.narrow(0, 0, dx_len)?.reshape(x.shape())?)
    } else {
        None
    };
    let dy = if want_dy {
        Some(flat.narrow(0, dx_len, y.elem_count())?.reshape(y.shape())?)
    } else {
        None
    };
    Ok((dx, dy))
}

/// (x, y, grad_out) -> flat [dx; dy], each only when wanted.
struct PairwiseBackward {
    components: usize,
    want_dx: bool,
    want_dy: bool,
}

impl CustomOp3 for PairwiseBackward {
    fn name(&self) -> &'static str {
        "mrn_pairwise_backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (p, geo) = PairDims::check(xl.dims(), yl.dims(), self.components)?;
        if gl.dims() != [p.e, p.b, p.m] {
            return Err(bad_shape(
                "mrn_pairwise",
                format!("output gradient has shape {:?}", gl.dims()),
            ));
        }
        let (x, y, grad) = (
            f32_slice(OP, xs, xl)?,
            f32_slice(OP, ys, yl)?,
            f32_slice(OP, gs, gl)?,
        );
        let (dx, dy) = pairwise_grads(x, y, grad, p, &geo);
        let mut flat = if self.want_dx { dx } else { Vec::new() };
        if self.want_dy {
            flat.extend_from_slice(&dy);
        }
        let len = flat.len();
        Ok((CpuStorage::F32(flat), Shape::from(len)))
    }
}

/// (∂L/∂x, ∂L/∂y). Each task takes a range of rows (e, i), writes their dx rows and sums its
/// contributions to every y row in a private buffer; the buffers are added at the end. Each pair
/// is thus visited once for both gradients.
fn pairwise_grads(
    x: &[f32],
    y: &[f32],
    grad: &[f32],
    p: PairDims,
    geo: &Geometry,
) -> (Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; x.len()];
    let rows = p.e * p.b;
    if geo.dim == 0 || rows == 0 {
        return (dx, vec![0f32; y.len()]);
    }
    let per_task = items_per_task(rows);
    let dy = dx
        .par_chunks_mut(per_task * geo.dim)
        .enumerate()
        .map(|(task, dx_task)| {
            let mut dy = vec![0f32; y.len()];
            for (local, dx_row) in dx_task.chunks_exact_mut(geo.dim).enumerate() {
                let row = task * per_task + local;
                let ens_rows = (row / p.b) * p.m * geo.dim..(row / p.b + 1) * p.m * geo.dim;
                let x_row = &x[row * geo.dim..(row + 1) * geo.dim];
                let g_row = &grad[row * p.m..(row + 1) * p.m];
                grad_pairs(
                    x_row,
                    &y[ens_rows.clone()],
                    g_row,
                    geo,
                    dx_row,
                    &mut dy[ens_rows],
                );
            }
            dy
        })
        .reduce_with(|mut a, b| {
            for (u, v) in a.iter_mut().zip(&b) {
                *u += v;
            }
            a
        })
        .unwrap_or_else(|| vec![0f32; y.len()]);
    (dx, dy)
}

/// Elements of the `[E, B, chunk, D]` pairwise difference that the portable path holds at once
/// (64 MiB of f32): at the published sizes (E 2, B 256, D 512) that is 64 columns per chunk.
pub const MRN_CHUNK_ELEMENTS: usize = 1 << 24;

/// MRN quasimetric over all pairs: x `[E,B,D]`, y `[E,M,D]` -> `[E,B,M]`, entry (e, i, j) = `d(x[e,i], y[e,j])`.
///
/// f32 CPU tensors run fused loops in parallel (forward and backward to both x and y) and never
/// materialise the `[E,B,M,D]` differences; every other case takes [`mrn_pairwise_chunked`] with
/// chunks of at most [`MRN_CHUNK_ELEMENTS`] differences.
/// `components` must divide D into chunks of an even size.
pub fn mrn_pairwise(x: &Tensor, y: &Tensor, components: usize) -> candle_core::Result<Tensor> {
    let (p, geo) = PairDims::check(x.dims(), y.dims(), components)?;
    if !fast_path(&[x, y]) {
        let per_column = (p.e * p.b * geo.dim).max(1);
        let chunk = (MRN_CHUNK_ELEMENTS / per_column).clamp(1, p.m.max(1));
        return mrn_pairwise_chunked(x, y, components, chunk);
    }
    x.contiguous()?
        .apply_op2(&y.contiguous()?, Pairwise { components })
}

/// The portable MRN over all pairs: [`mrn_distance_broadcast`] on `chunk` columns of y at a time,
/// concatenated, so memory grows with `E * B * chunk * D`. Differentiable by candle's autograd
/// on any device and dtype.
pub fn mrn_pairwise_chunked(
    x: &Tensor,
    y: &Tensor,
    components: usize,
    chunk: usize,
) -> candle_core::Result<Tensor> {
    let (p, _) = PairDims::check(x.dims(), y.dims(), components)?;
    if chunk == 0 {
        return Err(bad_shape(
            "mrn_pairwise",
            "chunk must hold at least one column".to_string(),
        ));
    }
    if p.m == 0 {
        return Tensor::zeros((p.e, p.b, 0), x.dtype(), x.device());
    }
    let x = x.unsqueeze(2)?;
    let parts = (0..p.m)
        .step_by(chunk)
        .map(|start| {
            let columns = y.narrow(1, start, chunk.min(p.m - start))?.unsqueeze(1)?;
            mrn_distance_broadcast(&x, &columns, components)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&parts, 2)
}

struct Matched {
    components: usize,
}

fn matched_geometry(x: &[usize], y: &[usize], components: usize) -> candle_core::Result<Geometry> {
    if x != y || x.is_empty() {
        return Err(bad_shape(
            "mrn_matched",
            format!("x and y must have the same shape [..., D], got {x:?} and {y:?}"),
        ));
    }
    Geometry::new(x[x.len() - 1], components)
}

impl CustomOp2 for Matched {
    fn name(&self) -> &'static str {
        "mrn_matched"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let geo = matched_geometry(xl.dims(), yl.dims(), self.components)?;
        let (x, y) = (f32_slice(OP, xs, xl)?, f32_slice(OP, ys, yl)?);
        let dims = xl.dims();
        let out_shape = Shape::from(&dims[..dims.len() - 1]);
        let mut out = vec![0f32; out_shape.elem_count()];
        if geo.dim > 0 {
            out.par_iter_mut()
                .zip(x.par_chunks(geo.dim).zip(y.par_chunks(geo.dim)))
                .for_each(|(o, (xr, yr))| distance_row(xr, yr, &geo, std::slice::from_mut(o)));
        }
        Ok((CpuStorage::F32(out), out_shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (want_dx, want_dy) = (x.track_op(), y.track_op());
        let op = MatchedBackward {
            components: self.components,
            want_dx,
            want_dy,
        };
        let flat = x.apply_op3_no_bwd(y, &grad, &op)?;
        split_grads(&flat, x, y, want_dx, want_dy)
    }
}

/// (x, y, grad_out) -> flat [dx; dy] for matched rows, each only when wanted.
struct MatchedBackward {
    components: usize,
    want_dx: bool,
    want_dy: bool,
}

impl CustomOp3 for MatchedBackward {
    fn name(&self) -> &'static str {
        "mrn_matched_backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let geo = matched_geometry(xl.dims(), yl.dims(), self.components)?;
        let dims = xl.dims();
        if gl.dims() != &dims[..dims.len() - 1] {
            return Err(bad_shape(
                "mrn_matched",
                format!("output gradient has shape {:?}", gl.dims()),
            ));
        }
        let (x, y, grad) = (
            f32_slice(OP, xs, xl)?,
            f32_slice(OP, ys, yl)?,
            f32_slice(OP, gs, gl)?,
        );
        let (mut dx, mut dy) = (vec![0f32; x.len()], vec![0f32; y.len()]);
        if geo.dim > 0 {
            dx.par_chunks_mut(geo.dim)
                .zip(dy.par_chunks_mut(geo.dim))
                .zip(x.par_chunks(geo.dim).zip(y.par_chunks(geo.dim)))
                .zip(grad.par_iter())
                .for_each(|(((dx_row, dy_row), (xr, yr)), g)| {
                    grad_pairs(xr, yr, std::slice::from_ref(g), &geo, dx_row, dy_row)
                });
        }
        let mut flat = if self.want_dx { dx } else { Vec::new() };
        if self.want_dy {
            flat.extend_from_slice(&dy);
        }
        let len = flat.len();
        Ok((CpuStorage::F32(flat), Shape::from(len)))
    }
}

/// MRN quasimetric for matched rows: x, y `[..., D]` (same shape) -> `[...]`.
///
/// f32 CPU tensors use a fused kernel with backward; others use [`mrn_distance_broadcast`].
pub fn mrn_matched(x: &Tensor, y: &Tensor, components: usize) -> candle_core::Result<Tensor> {
    matched_geometry(x.dims(), y.dims(), components)?;
    if !fast_path(&[x, y]) {
        return mrn_distance_broadcast(x, y, components);
    }
    x.contiguous()?
        .apply_op2(&y.contiguous()?, Matched { components })
}

/// The MRN distance written with plain candle ops on broadcast shapes `[..., D]`.
///
/// Works for any dtype and device: it is the portable path of [`mrn_matched`] and, chunked, of
/// [`mrn_pairwise`]. Its gradient follows the fused kernels' rules: the relu(max) term sends its
/// gradient to the first maximum of each component (`argmax` + `gather`; candle's `max` would
/// share it among ties) and none where the maximum is <= 0 (candle's `relu` passes it at 0).
/// It materialises the broadcast difference, so call it on all pairs of a batch only in chunks.
pub fn mrn_distance_broadcast(
    x: &Tensor,
    y: &Tensor,
    components: usize,
) -> candle_core::Result<Tensor> {
    let diff = x.broadcast_sub(y)?;
    let dims = diff.dims().to_vec();
    let Some((&dim, lead)) = dims.split_last() else {
        return Err(bad_shape(OP, "inputs must have a latent axis".to_string()));
    };
    let geo = Geometry::new(dim, components)?;
    let mut chunked = lead.to_vec();
    chunked.extend([components, geo.chunk]);
    let last = chunked.len() - 1;
    let diff = diff.reshape(chunked)?;
    let asym_half = diff.narrow(last, 0, geo.half)?.contiguous()?;
    let first_max = asym_half.argmax_keepdim(last)?;
    let max = asym_half.gather(&first_max, last)?.squeeze(last)?;
    let zeros = max.zeros_like()?.detach();
    let asym = max.detach().gt(&zeros)?.where_cond(&max, &zeros)?;
    let sym =
        (diff.narrow(last, geo.half, geo.half)?.sqr()?.sum(last)? + f64::from(SQRT_EPS))?.sqrt()?;
    (asym + sym)?.mean(last - 1)? / (dim as f64).sqrt()
}
