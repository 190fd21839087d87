//! Adam (Kingma & Ba; the Optax formulation the reference code uses) with inspectable state.
//!
//! `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `p <- p - lr * m_hat / (sqrt(v_hat) + eps)` with bias-corrected `m_hat`, `v_hat`.
//! The state (m, v per parameter and the step count) round-trips through safetensors exactly,
//! so a resumed run takes bit-identical steps.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{
    CpuStorage, DType, Device, InplaceOp2, InplaceOp3, Layout, Tensor, Var, backprop::GradStore,
};
use rayon::prelude::*;

use crate::error::{MqeError, Result};

/// Adam hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to sqrt(v_hat).
    pub eps: f64,
}

impl Default for AdamParams {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// Adam over a fixed, named set of variables.
pub struct Adam {
    params: AdamParams,
    slots: Vec<Slot>,
    step: u64,
}

/// Name of the step counter inside the optimiser safetensors file.
const STEP_KEY: &str = "adam.step";

impl Adam {
    /// Optimiser over `vars` (name, variable); zero moments, step 0.
    pub fn new(vars: Vec<(String, Var)>, params: AdamParams) -> Result<Self> {
        let mut slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = var.as_tensor().zeros_like()?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            params,
            slots,
            step: 0,
        })
    }

    /// Number of updates taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Hyper-parameters.
    pub fn params(&self) -> AdamParams {
        self.params
    }

    /// One update from the gradients in `grads`; a variable without a gradient counts as zero
    /// gradient (its moments still decay, as in Optax).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let p = self.params;
        let t = self.step as i32;
        let m_corr = 1.0 - p.beta1.powi(t);
        let v_corr = 1.0 - p.beta2.powi(t);
        for slot in &mut self.slots {
            let theta = slot.var.as_tensor();
            let grad = match grads.get(theta) {
                Some(g) => g.clone(),
                None => theta.zeros_like()?,
            };
            if is_cpu_f32(&[theta, &grad, &slot.m, &slot.v]) {
                let grad = grad.contiguous()?;
                slot.m.inplace_op2(
                    &grad,
                    &Moment {
                        decay: p.beta1,
                        square: false,
                    },
                )?;
                slot.v.inplace_op2(
                    &grad,
                    &Moment {
                        decay: p.beta2,
                        square: true,
                    },
                )?;
                let update = Update {
                    lr: p.lr,
                    m_corr,
                    v_corr,
                    eps: p.eps,
                };
                theta.inplace_op3(&slot.m, &slot.v, &update)?;
            } else {
                slot.m = ((&slot.m * p.beta1)? + (&grad * (1.0 - p.beta1))?)?;
                slot.v = ((&slot.v * p.beta2)? + (grad.sqr()? * (1.0 - p.beta2))?)?;
                let m_hat = (&slot.m / m_corr)?;
                let v_hat = (&slot.v / v_corr)?;
                let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
                slot.var.set(&(theta - (update * p.lr)?)?)?;
            }
        }
        Ok(())
    }

    /// Moments as `m.<name>` / `v.<name>` plus the step counter.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for slot in &self.slots {
            // Copies: the moments are updated in place by later steps.
            out.insert(format!("m.{}", slot.name), slot.m.copy()?);
            out.insert(format!("v.{}", slot.name), slot.v.copy()?);
        }
        let step = Tensor::new(&[self.step as i64], &Device::Cpu)?;
        out.insert(STEP_KEY.to_string(), step);
        Ok(out)
    }

    /// Writes the state to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = self.state_tensors()?;
        candle_core::safetensors::save(&tensors, path).map_err(|e| MqeError::CorruptFile {
            path: path.to_path_buf(),
            reason: format!("cannot write: {e}"),
        })
    }

    /// Restores the state from tensors produced by [`Adam::state_tensors`]; every slot must be
    /// present with its parameter's shape.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let step = tensors
            .get(STEP_KEY)
            .ok_or_else(|| MqeError::MissingTensor {
                path: path.to_path_buf(),
                name: STEP_KEY.into(),
                expected: vec![1],
            })?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        let step = match step.as_slice() {
            [s] if *s >= 0 => *s as u64,
            _ => {
                return Err(MqeError::CorruptFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "`{STEP_KEY}` must hold one non-negative integer, got {step:?}"
                    ),
                });
            }
        };
        let device = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let mut restored = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let shape = slot.var.dims().to_vec();
            let fetch = |key: String| -> Result<Tensor> {
                let t = tensors.get(&key).ok_or_else(|| MqeError::MissingTensor {
                    path: path.to_path_buf(),
                    name: key.clone(),
                    expected: shape.clone(),
                })?;
                if t.dims() != shape.as_slice() {
                    return Err(MqeError::TensorShape {
                        path: path.to_path_buf(),
                        name: key,
                        expected: shape.clone(),
                        found: t.dims().to_vec(),
                    });
                }
                // A private copy: the moments are updated in place.
                Ok(t.to_dtype(DType::F32)?.to_device(&device)?.copy()?)
            };
            restored.push((
                fetch(format!("m.{}", slot.name))?,
                fetch(format!("v.{}", slot.name))?,
            ));
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(restored) {
            slot.m = m;
            slot.v = v;
        }
        self.step = step;
        Ok(())
    }
}

/// Whether the in-place CPU kernels apply (see [`crate::ops::fast_path`]); else the update is
/// composed from candle ops, the portable path a GPU takes.
fn is_cpu_f32(ts: &[&Tensor]) -> bool {
    crate::ops::fast_path(ts) && ts.iter().all(|t| t.is_contiguous())
}

fn cpu_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("adam: expected contiguous f32 storage"),
    }
}

fn cpu_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("adam: expected contiguous f32 storage"),
    }
}

/// Chunk of elements per rayon task: large enough to amortise scheduling.
const PAR_CHUNK: usize = 1 << 14;

/// In place: `m <- decay m + (1 - decay) g` (or `g^2` when `square`).
struct Moment {
    decay: f64,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "mqe-adam-moment"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        g_l: &Layout,
    ) -> candle_core::Result<()> {
        let m = cpu_slice_mut(dst, dst_l)?;
        let g = cpu_slice(g, g_l)?;
        let (d, w) = (self.decay as f32, (1.0 - self.decay) as f32);
        let square = self.square;
        m.par_chunks_mut(PAR_CHUNK)
            .zip(g.par_chunks(PAR_CHUNK))
            .for_each(|(mc, gc)| {
                for (mv, gv) in mc.iter_mut().zip(gc) {
                    let x = if square { gv * gv } else { *gv };
                    *mv = d * *mv + w * x;
                }
            });
        Ok(())
    }
}

/// In place: `p <- p - lr * (m / m_corr) / (sqrt(v / v_corr) + eps)`.
struct Update {
    lr: f64,
    m_corr: f64,
    v_corr: f64,
    eps: f64,
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "mqe-adam-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        m: &CpuStorage,
        m_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> candle_core::Result<()> {
        let p = cpu_slice_mut(dst, dst_l)?;
        let m = cpu_slice(m, m_l)?;
        let v = cpu_slice(v, v_l)?;
        let (lr, mc, vc, eps) = (
            self.lr as f32,
            self.m_corr as f32,
            self.v_corr as f32,
            self.eps as f32,
        );
        p.par_chunks_mut(PAR_CHUNK)
            .zip(m.par_chunks(PAR_CHUNK).zip(v.par_chunks(PAR_CHUNK)))
            .for_each(|(pc, (mc_, vc_))| {
                for ((pv, mv), vv) in pc.iter_mut().zip(mc_).zip(vc_) {
                    *pv -= lr * (mv / mc) / ((vv / vc).sqrt() + eps);
                }
            });
        Ok(())
    }
}
