//! Fused CPU kernels for the dense layers, with backward passes: `gelu(x + b)` and LayerNorm
//! with its affine part.
//!
//! `candle_nn::ops::layer_norm` is forward-only and candle's GELU backward is a chain of about
//! ten elementwise ops, which dominated a train step. Both run here as one parallel pass each.
//! Inputs are `[N, H]` with parameters `[H]`, or `[G, N, H]` with one parameter row per group
//! `[G, H]` (an ensemble). Tensors that are not f32 on the CPU, or any tensor when the portable
//! path is forced ([`crate::ops::force_portable_ops`]), take composed candle ops instead.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, D, Layout, Shape, Tensor};

use crate::ops::fast_path;
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// Views `x` as `[G, N, H]` and `p` as `[G, 1, H]`, the shapes the composed fallback needs.
fn grouped(x: &Tensor, p: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let h = x.dim(D::Minus1)?;
    let g = match (x.dims(), p.dims()) {
        (_, &[ph]) if ph == h => 1,
        (&[xg, _, _], &[pg, ph]) if pg == xg && ph == h => xg,
        _ => candle_core::bail!(
            "fused layer: parameter {:?} does not fit input {:?} (expected [H] or [G, H] for [G, N, H])",
            p.dims(),
            x.dims()
        ),
    };
    let n = x.elem_count() / (g * h).max(1);
    Ok((x.reshape((g, n, h))?, p.reshape((g, 1, h))?))
}

/// Sum of `t` `[G, N, H]`-viewed over N, shaped like the parameter `p`. Done as `1^T t`
/// on gemm: candle's reduction over a middle axis is a strided scalar loop.
fn sum_rows_like(t: &Tensor, p: &Tensor) -> candle_core::Result<Tensor> {
    let (t3, _) = grouped(t, p)?;
    let (g, n, _) = t3.dims3()?;
    let ones = Tensor::ones((g, 1, n), t.dtype(), t.device())?;
    ones.matmul(&t3.contiguous()?)?.reshape(p.shape())
}

/// `x + bias` (bias per group row), differentiable in both, with the bias gradient on gemm.
pub fn bias_add(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    if !fast_path(&[x, bias]) {
        let (x3, b3) = grouped(x, bias)?;
        return x3.broadcast_add(&b3)?.reshape(x.shape());
    }
    grouped(x, bias)?;
    x.contiguous()?.apply_op2(&bias.contiguous()?, BiasAdd)
}

struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "mqe-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "bias_add x")?;
        let b = f32_data(s2, l2, "bias_add bias")?;
        let h = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let n = rows_per_group(x.len(), b.len(), h);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .enumerate()
            .for_each(|(r, (yr, xr))| {
                let br = &b[(r / n) * h..(r / n + 1) * h];
                for ((yv, xv), bv) in yr.iter_mut().zip(xr).zip(br) {
                    *yv = xv + bv;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(sum_rows_like(grad, bias)?)))
    }
}

/// `gelu_tanh(x + bias)`, differentiable in both.
pub fn bias_gelu(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    if !fast_path(&[x, bias]) {
        let (x3, b3) = grouped(x, bias)?;
        return x3.broadcast_add(&b3)?.gelu()?.reshape(x.shape());
    }
    grouped(x, bias)?;
    x.contiguous()?.apply_op2(&bias.contiguous()?, BiasGelu)
}

/// LayerNorm over the last axis with per-group `scale` and `bias`, differentiable in all three.
pub fn layer_norm_affine(
    x: &Tensor,
    scale: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    if !fast_path(&[x, scale, bias]) {
        let (x3, s3) = grouped(x, scale)?;
        let (_, b3) = grouped(x, bias)?;
        let centred = x3.broadcast_sub(&x3.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let y = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
        return y.broadcast_mul(&s3)?.broadcast_add(&b3)?.reshape(x.shape());
    }
    grouped(x, scale)?;
    x.contiguous()?.apply_op3(
        &scale.contiguous()?,
        &bias.contiguous()?,
        LayerNormAffine { eps: eps as f32 },
    )
}

fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{what}: only f32 is supported"),
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// Rows of length `h` of `x` and, per row, the parameter row it uses (row r of group r / n).
fn rows_per_group(x_len: usize, p_len: usize, h: usize) -> usize {
    let groups = (p_len / h.max(1)).max(1);
    (x_len / h.max(1) / groups).max(1)
}

/// tanh as a clamped rational function (Eigen's / XLA's f32 `tanh`): a few ulp from libm's,
/// branch-free so the loops vectorise; libm's `tanhf` was a tenth of a train step.
// The coefficients are Eigen's, kept digit for digit.
#[allow(clippy::excessive_precision)]
fn tanh_fast(x: f32) -> f32 {
    const CLAMP: f32 = 7.998_811_7;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_187_9e-13;
    p = x2 * p + -8.604_671_5e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    p *= x;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    p / q
}

fn gelu(u: f32) -> f32 {
    0.5 * u * (1.0 + tanh_fast(SQRT_2_OVER_PI * (u + GELU_CUBIC * u * u * u)))
}

fn gelu_grad(u: f32) -> f32 {
    let t = tanh_fast(SQRT_2_OVER_PI * (u + GELU_CUBIC * u * u * u));
    0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * u * u)
}

struct BiasGelu;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "mqe-bias-gelu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "bias_gelu x")?;
        let b = f32_data(s2, l2, "bias_gelu bias")?;
        let h = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let n = rows_per_group(x.len(), b.len(), h);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .enumerate()
            .for_each(|(r, (yr, xr))| {
                let br = &b[(r / n) * h..(r / n + 1) * h];
                for ((yv, xv), bv) in yr.iter_mut().zip(xr).zip(br) {
                    *yv = gelu(xv + bv);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gx = x.apply_op3_no_bwd(bias, &grad.contiguous()?, &BiasGeluBwd)?;
        let gb = sum_rows_like(&gx, bias)?;
        Ok((Some(gx), Some(gb)))
    }
}

/// d/dx gelu(x + b) * grad.
struct BiasGeluBwd;

impl CustomOp3 for BiasGeluBwd {
    fn name(&self) -> &'static str {
        "mqe-bias-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "bias_gelu bwd x")?;
        let b = f32_data(s2, l2, "bias_gelu bwd bias")?;
        let g = f32_data(s3, l3, "bias_gelu bwd grad")?;
        let h = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let n = rows_per_group(x.len(), b.len(), h);
        let mut gx = vec![0f32; x.len()];
        gx.par_chunks_mut(h)
            .zip(x.par_chunks(h).zip(g.par_chunks(h)))
            .enumerate()
            .for_each(|(r, (out, (xr, gr)))| {
                let br = &b[(r / n) * h..(r / n + 1) * h];
                for (((o, xv), bv), gv) in out.iter_mut().zip(xr).zip(br).zip(gr) {
                    *o = gv * gelu_grad(xv + bv);
                }
            });
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

struct LayerNormAffine {
    eps: f32,
}

impl CustomOp3 for LayerNormAffine {
    fn name(&self) -> &'static str {
        "mqe-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "layer_norm x")?;
        let s = f32_data(s2, l2, "layer_norm scale")?;
        let b = f32_data(s3, l3, "layer_norm bias")?;
        let h = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let n = rows_per_group(x.len(), s.len(), h);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .enumerate()
            .for_each(|(r, (yr, xr))| {
                let (mean, inv_std) = row_stats(xr, self.eps);
                let sr = &s[(r / n) * h..(r / n + 1) * h];
                let br = &b[(r / n) * h..(r / n + 1) * h];
                for (((yv, xv), sv), bv) in yr.iter_mut().zip(xr).zip(sr).zip(br) {
                    *yv = (xv - mean) * inv_std * sv + bv;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // Packed [2, ...]: the input gradient and grad * x_hat (for the scale gradient).
        let packed = x.apply_op3_no_bwd(scale, &grad, &LayerNormBwd { eps: self.eps })?;
        let gx = packed.get(0)?;
        let g_scale = sum_rows_like(&packed.get(1)?, scale)?;
        let g_bias = sum_rows_like(&grad, scale)?;
        Ok((Some(gx), Some(g_scale), Some(g_bias)))
    }
}

/// dx = inv_std * (dy' - mean(dy') - x_hat * mean(dy' * x_hat)) with dy' = dy * scale.
struct LayerNormBwd {
    eps: f32,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "mqe-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, "layer_norm bwd x")?;
        let s = f32_data(s2, l2, "layer_norm bwd scale")?;
        let g = f32_data(s3, l3, "layer_norm bwd grad")?;
        let h = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let n = rows_per_group(x.len(), s.len(), h);
        let hf = h as f32;
        let mut out = vec![0f32; 2 * x.len()];
        let (dx, gxhat) = out.split_at_mut(x.len());
        dx.par_chunks_mut(h)
            .zip(gxhat.par_chunks_mut(h))
            .zip(x.par_chunks(h).zip(g.par_chunks(h)))
            .enumerate()
            .for_each(|(r, ((dxr, gxr), (xr, gr)))| {
                let (mean, inv_std) = row_stats(xr, self.eps);
                let sr = &s[(r / n) * h..(r / n + 1) * h];
                let (mut g_mean, mut gy_mean) = (0f32, 0f32);
                for (((xv, gv), sv), gx) in xr.iter().zip(gr).zip(sr).zip(gxr.iter_mut()) {
                    let xhat = (xv - mean) * inv_std;
                    let dy = gv * sv;
                    g_mean += dy;
                    gy_mean += dy * xhat;
                    *gx = gv * xhat;
                }
                g_mean /= hf;
                gy_mean /= hf;
                for (((o, xv), gv), sv) in dxr.iter_mut().zip(xr).zip(gr).zip(sr) {
                    let xhat = (xv - mean) * inv_std;
                    *o = inv_std * (gv * sv - g_mean - xhat * gy_mean);
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.shape().dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::tanh_fast;

    #[test]
    fn fast_tanh_matches_libm() {
        let worst = (-4000..=4000)
            .map(|i| i as f32 * 0.005)
            .map(|x| (tanh_fast(x) - x.tanh()).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-6, "max |tanh_fast - tanh| = {worst}");
    }
}
