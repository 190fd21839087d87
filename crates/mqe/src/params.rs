//! Parameter creation: every parameter lives in one [`VarMap`] under a stable hierarchical name
//! (`phi.mlp.hidden0.weight`), initialised from a seeded generator so a seed reproduces a model.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::error::Result;

/// Creates named parameters under a prefix.
pub struct ParamBuilder<'a> {
    varmap: &'a VarMap,
    device: &'a Device,
    rng: &'a mut StdRng,
    prefix: String,
}

/// Seeded random source shared by all builders of one model.
pub fn init_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

impl<'a> ParamBuilder<'a> {
    /// Root builder (empty prefix).
    pub fn new(varmap: &'a VarMap, device: &'a Device, rng: &'a mut StdRng) -> Self {
        Self {
            varmap,
            device,
            rng,
            prefix: String::new(),
        }
    }

    /// Builder for the sub-module `name`.
    pub fn pp(&mut self, name: &str) -> ParamBuilder<'_> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        ParamBuilder {
            varmap: self.varmap,
            device: self.device,
            rng: self.rng,
            prefix,
        }
    }

    fn insert(&mut self, name: &str, values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let tensor = Tensor::from_vec(values, shape, self.device)?;
        let var = Var::from_tensor(&tensor)?;
        let full = format!("{}.{name}", self.prefix);
        let t = var.as_tensor().clone();
        // The VarMap mutex is only poisoned if another thread panicked while holding it.
        let mut data = match self.varmap.data().lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        data.insert(full, var);
        Ok(t)
    }

    /// Glorot-uniform tensor: U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), times `scale`.
    pub fn glorot(
        &mut self,
        name: &str,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        scale: f64,
    ) -> Result<Tensor> {
        let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let n: usize = shape.iter().product();
        let values = (0..n)
            .map(|_| (self.rng.random_range(-bound..bound) * scale) as f32)
            .collect();
        self.insert(name, values, shape)
    }

    /// Constant tensor.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.insert(name, vec![value; n], shape)
    }
}

/// dtype of every parameter.
pub const PARAM_DTYPE: DType = DType::F32;
