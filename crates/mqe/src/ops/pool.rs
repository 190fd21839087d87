//! 3x3 stride-2 max pooling with TensorFlow/Flax "SAME" padding.

use super::{bad_shape, f32_slice, fast_path, items_per_task};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

const OP: &str = "max_pool_3x3_s2_same";
const KERNEL: usize = 3;
const STRIDE: usize = 2;

/// Output length and leading padding along one axis, as TensorFlow's "SAME":
/// out = ceil(len / stride), pad_total = max((out - 1) * stride + kernel - len, 0),
/// pad_before = pad_total / 2 (the odd extra pixel goes after).
fn same_geometry(len: usize) -> (usize, usize) {
    let out = len.div_ceil(STRIDE);
    let pad_total = ((out.max(1) - 1) * STRIDE + KERNEL).saturating_sub(len);
    (out, pad_total / 2)
}

/// Sizes of one pooling: planes = N*C, each `h x w` in and `oh x ow` out.
#[derive(Clone, Copy)]
struct PoolDims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    pad_top: usize,
    pad_left: usize,
}

impl PoolDims {
    fn new(dims: &[usize]) -> candle_core::Result<Self> {
        let &[n, c, h, w] = dims else {
            return Err(bad_shape(
                OP,
                format!("input must be [N,C,H,W], got {dims:?}"),
            ));
        };
        let (oh, pad_top) = same_geometry(h);
        let (ow, pad_left) = same_geometry(w);
        Ok(Self {
            n,
            c,
            h,
            w,
            oh,
            ow,
            pad_top,
            pad_left,
        })
    }

    fn in_plane(&self) -> usize {
        self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// Pools one plane. `padded` is scratch of `(2*oh+1) x (2*ow+1)`: the plane inside a -inf border,
    /// so that every window is a full 3x3 and the inner loop needs no bounds logic.
    /// `argmax` receives, per output, the plane index of the first maximum of its window.
    fn pool_plane(&self, plane: &[f32], padded: &mut [f32], out: &mut [f32], argmax: &mut [u32]) {
        let pw = 2 * self.ow + 1;
        padded.fill(f32::NEG_INFINITY);
        for (y, row) in plane.chunks_exact(self.w).enumerate() {
            // SAME geometry: pad_top + h <= 2*oh + 1 and pad_left + w <= 2*ow + 1, so every row fits.
            let start = (y + self.pad_top) * pw + self.pad_left;
            padded[start..start + row.len()].copy_from_slice(row);
        }
        for oy in 0..self.oh {
            let window_y = (2 * oy) as i64 - self.pad_top as i64;
            for ox in 0..self.ow {
                let window_x = (2 * ox) as i64 - self.pad_left as i64;
                // The window centre is always a real pixel: a valid index even if every value is -inf.
                let mut best_idx = (window_y + 1) * self.w as i64 + window_x + 1;
                let mut best = f32::NEG_INFINITY;
                for dy in 0..3 {
                    let base = (2 * oy + dy) * pw + 2 * ox;
                    for dx in 0..3 {
                        let v = padded[base + dx];
                        let idx = (window_y + dy as i64) * self.w as i64 + window_x + dx as i64;
                        // Strict '>' keeps the first maximum; selects rather than branches, as the
                        // winner is unpredictable.
                        let better = v > best;
                        best = if better { v } else { best };
                        best_idx = if better { idx } else { best_idx };
                    }
                }
                out[oy * self.ow + ox] = best;
                argmax[oy * self.ow + ox] = best_idx as u32;
            }
        }
    }
}

/// Forward op. It keeps the argmax of every window for its own backward pass (candle calls `bwd` on
/// the same op instance that ran the forward).
struct MaxPool {
    argmax: Mutex<Option<Arc<Vec<u32>>>>,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = PoolDims::new(l.dims())?;
        let x = f32_slice(OP, s, l)?;
        if d.in_plane() > u32::MAX as usize {
            return Err(bad_shape(
                OP,
                format!("plane of {}x{} is too large", d.h, d.w),
            ));
        }
        let (in_len, out_len) = (d.in_plane(), d.out_plane());
        let mut out = vec![0f32; d.n * d.c * out_len];
        let mut argmax = vec![0u32; out.len()];
        if out_len > 0 {
            let per_task = items_per_task(d.n * d.c);
            out.par_chunks_mut(per_task * out_len)
                .zip(argmax.par_chunks_mut(per_task * out_len))
                .zip(x.par_chunks(per_task * in_len))
                .for_each(|((out_task, arg_task), x_task)| {
                    let mut padded = vec![0f32; (2 * d.oh + 1) * (2 * d.ow + 1)];
                    let planes = out_task
                        .chunks_mut(out_len)
                        .zip(arg_task.chunks_mut(out_len))
                        .zip(x_task.chunks(in_len));
                    for ((out_plane, arg_plane), plane) in planes {
                        d.pool_plane(plane, &mut padded, out_plane, arg_plane);
                    }
                });
        }
        *self.argmax.lock().map_err(|_| poisoned())? = Some(Arc::new(argmax));
        Ok((CpuStorage::F32(out), Shape::from((d.n, d.c, d.oh, d.ow))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let argmax = self
            .argmax
            .lock()
            .map_err(|_| poisoned())?
            .clone()
            .ok_or_else(|| bad_shape(OP, "backward before forward".to_string()))?;
        let dims = PoolDims::new(x.dims())?;
        let op = MaxPoolBackward { dims, argmax };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

fn poisoned() -> candle_core::Error {
    bad_shape(
        OP,
        "argmax store poisoned by a panic in another thread".to_string(),
    )
}

/// grad_out -> grad_x: each output's gradient goes to the first maximum of its window.
struct MaxPoolBackward {
    dims: PoolDims,
    argmax: Arc<Vec<u32>>,
}

impl CustomOp1 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max_pool_3x3_s2_same_backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.dims;
        if l.dims() != [d.n, d.c, d.oh, d.ow] || self.argmax.len() != l.shape().elem_count() {
            return Err(bad_shape(
                OP,
                format!("output gradient has shape {:?}", l.dims()),
            ));
        }
        let grad = f32_slice(OP, s, l)?;
        let (in_len, out_len) = (d.in_plane(), d.out_plane());
        let mut dx = vec![0f32; d.n * d.c * in_len];
        if out_len > 0 && in_len > 0 {
            dx.par_chunks_mut(in_len)
                .zip(
                    grad.par_chunks(out_len)
                        .zip(self.argmax.par_chunks(out_len)),
                )
                .for_each(|(dx_plane, (grad_plane, arg_plane))| {
                    for (g, &idx) in grad_plane.iter().zip(arg_plane) {
                        dx_plane[idx as usize] += g;
                    }
                });
        }
        Ok((CpuStorage::F32(dx), Shape::from((d.n, d.c, d.h, d.w))))
    }
}

/// Max pool 3x3, stride 2, "SAME" padding as in TensorFlow/Flax (out = ceil(in / 2), padding -inf),
/// NCHW. The backward pass sends each output's gradient to the first maximum of its window, in
/// row-major window order; ties are common (flat image regions, ReLU zeros).
///
/// f32 CPU tensors take the fast kernel; every other case (other devices and dtypes, or the
/// portable path forced, see [`super::force_portable_ops`]) the portable composition of candle
/// ops, with the same outputs and gradients.
pub fn max_pool_3x3_s2_same(x: &Tensor) -> candle_core::Result<Tensor> {
    let d = PoolDims::new(x.dims())?;
    if fast_path(&[x]) {
        let op = MaxPool {
            argmax: Mutex::new(None),
        };
        return x.contiguous()?.apply_op1(op);
    }
    portable_max_pool(x, &d)
}

/// The pool from candle ops with autograd: nine strided views of the -inf-padded input (one per
/// window offset), and disjoint 0/1 masks that give each output to the first view holding its
/// window's maximum. Values are picked with `where_cond`, not multiplied by the masks: the -inf
/// border times 0 would be NaN.
fn portable_max_pool(x: &Tensor, d: &PoolDims) -> candle_core::Result<Tensor> {
    if d.n * d.c * d.out_plane() == 0 {
        return Tensor::zeros((d.n, d.c, d.oh, d.ow), x.dtype(), x.device());
    }
    // One row and column more than the windows reach, so that every offset's view is a whole
    // number of stride-2 steps; the extra -inf row and column are never read.
    let (padded_h, padded_w) = (2 * d.oh + 2, 2 * d.ow + 2);
    let x = pad_neg_inf(x, 2, d.pad_top, padded_h - d.h - d.pad_top)?;
    let x = pad_neg_inf(&x, 3, d.pad_left, padded_w - d.w - d.pad_left)?;
    let views = (0..KERNEL)
        .flat_map(|dy| (0..KERNEL).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| window_view(&x, d, dy, dx))
        .collect::<candle_core::Result<Vec<_>>>()?;
    // The maximum only chooses; it carries no gradient.
    let mut best = views[0].detach();
    for v in &views[1..] {
        best = best.maximum(&v.detach())?;
    }
    let zeros = views[0].zeros_like()?.detach();
    let mut taken = best.zeros_like()?.to_dtype(DType::U8)?;
    let no = taken.clone();
    let mut out: Option<Tensor> = None;
    for v in &views {
        let is_max = v.detach().eq(&best)?;
        let chosen = taken.where_cond(&no, &is_max)?;
        taken = (&taken + &chosen)?;
        let part = chosen.where_cond(v, &zeros)?;
        out = Some(match out {
            None => part,
            Some(sum) => (sum + part)?,
        });
    }
    out.ok_or_else(|| bad_shape(OP, "no window offsets".to_string()))
}

/// Input pixels at window offset (dy, dx) of every output: rows dy, dy+2, ... and columns
/// dx, dx+2, ... of the padded input, `[N, C, oh, ow]`.
fn window_view(padded: &Tensor, d: &PoolDims, dy: usize, dx: usize) -> candle_core::Result<Tensor> {
    let rows = padded
        .narrow(2, dy, STRIDE * d.oh)?
        .reshape((d.n, d.c, d.oh, STRIDE, 2 * d.ow + 2))?
        .narrow(3, 0, 1)?
        .squeeze(3)?;
    rows.narrow(3, dx, STRIDE * d.ow)?
        .reshape((d.n, d.c, d.oh, d.ow, STRIDE))?
        .narrow(4, 0, 1)?
        .squeeze(4)
}

fn pad_neg_inf(x: &Tensor, dim: usize, before: usize, after: usize) -> candle_core::Result<Tensor> {
    let side = |len: usize| -> candle_core::Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[dim] = len;
        Tensor::full(f32::NEG_INFINITY, dims, x.device())?.to_dtype(x.dtype())
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(side(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(side(after)?);
    }
    Tensor::cat(&parts, dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_geometry_matches_tensorflow() {
        // even: pad 0 before, 1 after; odd: 1 before, 1 after.
        assert_eq!(same_geometry(64), (32, 0));
        assert_eq!(same_geometry(7), (4, 1));
        assert_eq!(same_geometry(1), (1, 1));
        assert_eq!(same_geometry(2), (1, 0));
    }
}
