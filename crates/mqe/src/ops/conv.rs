//! Stride-1 "same" 2-D convolution through im2col / col2im on gemm.

use super::matmul::{MatRef, matmul_into};
use super::{bad_shape, f32_slice, fast_path, items_per_task};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

const OP: &str = "conv2d_same";

/// Sizes of one convolution: input `[n, c, h, w]`, weight `[o, c, kh, kw]`, output `[n, o, h, w]`.
#[derive(Clone, Copy, Debug)]
struct ConvDims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
}

impl ConvDims {
    fn check(x: &[usize], weight: &[usize], bias: &[usize]) -> candle_core::Result<Self> {
        let &[n, c, h, w] = x else {
            return Err(bad_shape(OP, format!("input must be [N,C,H,W], got {x:?}")));
        };
        let &[o, wc, kh, kw] = weight else {
            return Err(bad_shape(
                OP,
                format!("weight must be [O,C,KH,KW], got {weight:?}"),
            ));
        };
        if wc != c {
            return Err(bad_shape(
                OP,
                format!("weight has {wc} input channels, input has {c}"),
            ));
        }
        if c == 0 || o == 0 {
            return Err(bad_shape(
                OP,
                format!("need at least one input and output channel, got weight {weight:?}"),
            ));
        }
        if kh % 2 == 0 || kw % 2 == 0 {
            return Err(bad_shape(
                OP,
                format!("kernel must have odd sides for same padding, got {kh}x{kw}"),
            ));
        }
        if bias != [o] {
            return Err(bad_shape(OP, format!("bias must be [{o}], got {bias:?}")));
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
        })
    }

    fn pixels(&self) -> usize {
        self.h * self.w
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn patch_len(&self) -> usize {
        self.c * self.kh * self.kw
    }
}

/// For kernel offset `k` (0..ksize) with padding `ksize / 2`, the output positions `lo..hi` that
/// read an in-bounds input, and the input index of output 0 (possibly negative, as isize).
fn valid_range(k: usize, ksize: usize, len: usize) -> (usize, usize, isize) {
    let shift = k as isize - (ksize / 2) as isize;
    let lo = (-shift).clamp(0, len as isize) as usize;
    let hi = (len as isize - shift).clamp(0, len as isize) as usize;
    (lo, hi.max(lo), shift)
}

/// Where kernel tap (ky, kx) reads for every output pixel q = y * w + x: input pixel q + offset,
/// valid only for rows `y_lo..y_hi` and columns `x_lo..x_hi`.
///
/// Within the valid rows, every pixel of the contiguous range `copy_lo..copy_hi` reads inside the
/// plane, so one memcpy moves a whole tap; the few pixels of invalid columns it also touches are
/// zeroed afterwards (im2col) or masked beforehand (col2im).
struct Tap {
    offset: isize,
    y_lo: usize,
    y_hi: usize,
    x_lo: usize,
    x_hi: usize,
    copy_lo: usize,
    copy_hi: usize,
}

impl Tap {
    fn new(ky: usize, kx: usize, d: &ConvDims) -> Self {
        let (y_lo, y_hi, y_shift) = valid_range(ky, d.kh, d.h);
        let (x_lo, x_hi, x_shift) = valid_range(kx, d.kw, d.w);
        let offset = y_shift * d.w as isize + x_shift;
        let p = d.pixels() as isize;
        let copy_lo = ((y_lo * d.w) as isize).max(-offset).clamp(0, p) as usize;
        let copy_hi = ((y_hi * d.w) as isize).min(p - offset).clamp(0, p) as usize;
        Self {
            offset,
            y_lo,
            y_hi,
            x_lo,
            x_hi,
            copy_lo,
            copy_hi: copy_hi.max(copy_lo),
        }
    }

    /// The input range matching `copy_lo..copy_hi`.
    fn source(&self) -> std::ops::Range<usize> {
        if self.copy_lo == self.copy_hi {
            return 0..0;
        }
        let lo = (self.copy_lo as isize + self.offset) as usize;
        lo..lo + (self.copy_hi - self.copy_lo)
    }

    /// Sets every pixel this tap must not read (padding) to zero.
    fn zero_invalid(&self, row: &mut [f32], w: usize) {
        row[..self.y_lo * w].fill(0.0);
        row[self.y_hi * w..].fill(0.0);
        if self.x_lo > 0 || self.x_hi < w {
            for line in row[self.y_lo * w..self.y_hi * w].chunks_exact_mut(w) {
                line[..self.x_lo].fill(0.0);
                line[self.x_hi..].fill(0.0);
            }
        }
    }
}

/// Unfolds one image `[c, h, w]` into `cols` `[c*kh*kw, h*w]` (zero padding).
fn im2col(image: &[f32], d: &ConvDims, cols: &mut [f32]) {
    let p = d.pixels();
    let mut rows = cols.chunks_exact_mut(p);
    for plane in image.chunks_exact(p) {
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let (Some(row), tap) = (rows.next(), Tap::new(ky, kx, d)) else {
                    return;
                };
                row[tap.copy_lo..tap.copy_hi].copy_from_slice(&plane[tap.source()]);
                tap.zero_invalid(row, d.w);
            }
        }
    }
}

/// Adjoint of [`im2col`]: folds `cols` `[c*kh*kw, h*w]` back onto `image` `[c, h, w]`, adding to
/// what `image` holds (callers pass zeros). `cols` is scratch: its padding entries are zeroed on the way.
fn col2im(cols: &mut [f32], d: &ConvDims, image: &mut [f32]) {
    let p = d.pixels();
    let mut rows = cols.chunks_exact_mut(p);
    for plane in image.chunks_exact_mut(p) {
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let (Some(row), tap) = (rows.next(), Tap::new(ky, kx, d)) else {
                    return;
                };
                tap.zero_invalid(row, d.w);
                let src = &row[tap.copy_lo..tap.copy_hi];
                for (acc, v) in plane[tap.source()].iter_mut().zip(src) {
                    *acc += v;
                }
            }
        }
    }
}

/// Forward op: (x, weight, bias) -> y.
struct ConvSame;

impl CustomOp3 for ConvSame {
    fn name(&self) -> &'static str {
        OP
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = ConvDims::check(xl.dims(), wl.dims(), bl.dims())?;
        let (x, weight, bias) = (
            f32_slice(OP, xs, xl)?,
            f32_slice(OP, ws, wl)?,
            f32_slice(OP, bs, bl)?,
        );
        let out = conv_forward(x, weight, bias, &d);
        Ok((CpuStorage::F32(out), Shape::from((d.n, d.o, d.h, d.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d = ConvDims::check(x.dims(), weight.dims(), bias.dims())?;
        let want_dx = x.track_op();
        let flat = x.apply_op3_no_bwd(weight, &grad, &ConvSameBackward { want_dx })?;
        let dx_len = if want_dx { x.elem_count() } else { 0 };
        let dw_len = weight.elem_count();
        let dx = if want_dx {
            Some(flat.narrow(0, 0, dx_len)?.reshape(x.shape())?)
        } else {
            None
        };
        let dw = flat.narrow(0, dx_len, dw_len)?.reshape(weight.shape())?;
        let db = flat.narrow(0, dx_len + dw_len, d.o)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

fn conv_forward(x: &[f32], weight: &[f32], bias: &[f32], d: &ConvDims) -> Vec<f32> {
    let (p, k) = (d.pixels(), d.patch_len());
    let mut out = vec![0f32; d.n * d.o * p];
    if out.is_empty() {
        return out;
    }
    let (image_len, out_len) = (d.c * p, d.o * p);
    let per_task = items_per_task(d.n);
    out.par_chunks_mut(per_task * out_len)
        .zip(x.par_chunks(per_task * image_len))
        .for_each(|(out_task, x_task)| {
            let mut cols = vec![0f32; k * p];
            let mut out_t = vec![0f32; p * d.o];
            for (out_n, image) in out_task.chunks_mut(out_len).zip(x_task.chunks(image_len)) {
                im2col(image, d, &mut cols);
                // out^T [p, o] = cols^T [p, k] @ W^T [k, o]: gemm runs this orientation about twice
                // as fast as W @ cols; the transpose back to [o, p] is cheap and in cache.
                matmul_into(
                    &mut out_t,
                    MatRef::row_major(&cols, k, p).t(),
                    MatRef::row_major(weight, d.o, k).t(),
                    false,
                );
                transpose_add_bias(&out_t, bias, p, out_n);
            }
        });
    out
}

/// `out[o][q] = out_t[q][o] + bias[o]`, in blocks of pixels that stay in L1 while every channel
/// row takes its share.
fn transpose_add_bias(out_t: &[f32], bias: &[f32], pixels: usize, out: &mut [f32]) {
    const BLOCK: usize = 64;
    let channels = bias.len();
    for start in (0..pixels).step_by(BLOCK) {
        let end = (start + BLOCK).min(pixels);
        let block = &out_t[start * channels..end * channels];
        for (oc, b) in bias.iter().enumerate() {
            let row = &mut out[oc * pixels + start..oc * pixels + end];
            for (v, t) in row.iter_mut().zip(block.chunks_exact(channels)) {
                *v = t[oc] + b;
            }
        }
    }
}

/// Backward op: (x, weight, grad_out) -> flat [dx (if wanted), dweight, dbias].
struct ConvSameBackward {
    want_dx: bool,
}

/// Per-task accumulators and scratch of the backward pass.
struct BackwardAcc {
    /// dweight transposed, [k, o]: gemm is faster producing it in this orientation.
    dw_t: Vec<f32>,
    db: Vec<f32>,
    cols: Vec<f32>,
}

impl BackwardAcc {
    fn new(d: &ConvDims) -> Self {
        let k = d.patch_len();
        Self {
            dw_t: vec![0.0; k * d.o],
            db: vec![0.0; d.o],
            cols: vec![0.0; k * d.pixels()],
        }
    }

    fn merge(mut self, other: Self) -> Self {
        for (a, b) in self.dw_t.iter_mut().zip(&other.dw_t) {
            *a += b;
        }
        for (a, b) in self.db.iter_mut().zip(&other.db) {
            *a += b;
        }
        self
    }
}

/// Sum with eight independent accumulators, so that it vectorises (a plain `sum` is sequential).
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut blocks = v.chunks_exact(8);
    for block in &mut blocks {
        for (a, x) in acc.iter_mut().zip(block) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

/// Adds one image's contribution to dweight and dbias, and writes its dx when asked.
fn backward_one(
    acc: &mut BackwardAcc,
    image: &[f32],
    grad_n: &[f32],
    weight: &[f32],
    dx_n: Option<&mut [f32]>,
    d: &ConvDims,
) {
    let (p, k) = (d.pixels(), d.patch_len());
    im2col(image, d, &mut acc.cols);
    // dW^T [k, o] += cols [k, p] @ grad^T [p, o]
    matmul_into(
        &mut acc.dw_t,
        MatRef::row_major(&acc.cols, k, p),
        MatRef::row_major(grad_n, d.o, p).t(),
        true,
    );
    for (db, row) in acc.db.iter_mut().zip(grad_n.chunks(p)) {
        *db += sum_lanes(row);
    }
    if let Some(dx_n) = dx_n {
        // dcols [k, p] = W^T [k, o] @ grad [o, p], then fold back onto the image.
        matmul_into(
            &mut acc.cols,
            MatRef::row_major(weight, d.o, k).t(),
            MatRef::row_major(grad_n, d.o, p),
            false,
        );
        col2im(&mut acc.cols, d, dx_n);
    }
}

impl CustomOp3 for ConvSameBackward {
    fn name(&self) -> &'static str {
        "conv2d_same_backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let wd = wl.dims();
        let d = ConvDims::check(xl.dims(), wd, &wd[..1])?;
        if gl.dims() != [d.n, d.o, d.h, d.w] {
            return Err(bad_shape(
                OP,
                format!("output gradient has shape {:?}", gl.dims()),
            ));
        }
        let (x, weight, grad) = (
            f32_slice(OP, xs, xl)?,
            f32_slice(OP, ws, wl)?,
            f32_slice(OP, gs, gl)?,
        );
        let flat = conv_backward(x, weight, grad, &d, self.want_dx);
        let len = flat.len();
        Ok((CpuStorage::F32(flat), Shape::from(len)))
    }
}

fn conv_backward(x: &[f32], weight: &[f32], grad: &[f32], d: &ConvDims, want_dx: bool) -> Vec<f32> {
    let (image_len, grad_len) = (d.c * d.pixels(), d.o * d.pixels());
    let dx_len = if want_dx { x.len() } else { 0 };
    // One allocation for the whole flat result, so appending dW and db never reallocates dx.
    let mut dx = Vec::with_capacity(dx_len + d.o * d.patch_len() + d.o);
    dx.resize(dx_len, 0f32);
    if d.n == 0 || image_len == 0 {
        dx.resize(dx.len() + d.o * d.patch_len() + d.o, 0.0);
        return dx;
    }
    let per_task = items_per_task(d.n);
    let x_tasks = x.par_chunks(per_task * image_len);
    let grad_tasks = grad.par_chunks(per_task * grad_len);
    let run_task = |dx_task: Option<&mut [f32]>, x_task: &[f32], grad_task: &[f32]| {
        let mut acc = BackwardAcc::new(d);
        let images = x_task.chunks(image_len).zip(grad_task.chunks(grad_len));
        match dx_task {
            Some(dx_task) => {
                for ((image, grad_n), dx_n) in images.zip(dx_task.chunks_mut(image_len)) {
                    backward_one(&mut acc, image, grad_n, weight, Some(dx_n), d);
                }
            }
            None => {
                for (image, grad_n) in images {
                    backward_one(&mut acc, image, grad_n, weight, None, d);
                }
            }
        }
        acc
    };
    let empty = || BackwardAcc::new(d);
    let acc = if want_dx {
        dx.par_chunks_mut(per_task * image_len)
            .zip(x_tasks.zip(grad_tasks))
            .map(|(dx_task, (x_task, grad_task))| run_task(Some(dx_task), x_task, grad_task))
            .reduce(empty, BackwardAcc::merge)
    } else {
        x_tasks
            .zip(grad_tasks)
            .map(|(x_task, grad_task)| run_task(None, x_task, grad_task))
            .reduce(empty, BackwardAcc::merge)
    };
    let k = d.patch_len();
    dx.extend((0..d.o * k).map(|i| acc.dw_t[(i % k) * d.o + i / k]));
    dx.extend_from_slice(&acc.db);
    dx
}

/// 2-D convolution, NCHW input `[N,C,H,W]`, weight `[O,C,KH,KW]` (odd kernel), bias `[O]`, stride 1,
/// "same" zero padding. Output `[N,O,H,W]`.
///
/// f32 CPU tensors use im2col / col2im on gemm, parallel over the batch, with a backward pass to
/// input, weight and bias. Every other case (other devices and dtypes, or the portable path
/// forced, see [`super::force_portable_ops`]) takes the portable im2col composition of candle ops.
pub fn conv2d_same(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let d = ConvDims::check(x.dims(), weight.dims(), bias.dims())?;
    if !fast_path(&[x, weight, bias]) {
        return portable_conv(x, weight, bias, &d);
    }
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, ConvSame)
}

/// The convolution from candle ops with autograd, as the fast path computes it: im2col as
/// `KH*KW` shifted views of the zero-padded input, stacked to `[N, C*KH*KW, H*W]` in the
/// weight's (c, ky, kx) order, then one batched matmul with `[O, C*KH*KW]` and the bias. On a GPU
/// the matmuls and their gradients run on cuBLAS.
fn portable_conv(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    d: &ConvDims,
) -> candle_core::Result<Tensor> {
    let (pad_y, pad_x) = (d.kh / 2, d.kw / 2);
    let padded = x
        .pad_with_zeros(2, pad_y, pad_y)?
        .pad_with_zeros(3, pad_x, pad_x)?;
    let shifted = (0..d.kh)
        .flat_map(|ky| (0..d.kw).map(move |kx| (ky, kx)))
        .map(|(ky, kx)| padded.narrow(2, ky, d.h)?.narrow(3, kx, d.w))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let cols = Tensor::stack(&shifted, 2)?.reshape((d.n, d.patch_len(), d.pixels()))?;
    let w = weight.reshape((1, d.o, d.patch_len()))?;
    let y = w.broadcast_matmul(&cols)?;
    y.broadcast_add(&bias.reshape((1, d.o, 1))?)?
        .reshape((d.n, d.o, d.h, d.w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col and col2im are adjoint: <im2col(a), b> == <a, col2im(b)>.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let d = ConvDims {
            n: 1,
            c: 2,
            h: 3,
            w: 5,
            o: 1,
            kh: 3,
            kw: 5,
        };
        let a: Vec<f32> = (0..d.c * d.pixels())
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let b: Vec<f32> = (0..d.patch_len() * d.pixels())
            .map(|i| (i as f32 * 0.11).cos())
            .collect();
        let mut cols = vec![0.0; b.len()];
        im2col(&a, &d, &mut cols);
        let mut folded = vec![0.0; a.len()];
        col2im(&mut b.clone(), &d, &mut folded);
        let lhs: f32 = cols.iter().zip(&b).map(|(u, v)| u * v).sum();
        let rhs: f32 = a.iter().zip(&folded).map(|(u, v)| u * v).sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }
}
