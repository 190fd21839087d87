//! Per-dimension affine map between the dataset's action range and the policy's [-1, 1].

use serde::{Deserialize, Serialize};

use crate::error::{MqeError, Result};

/// Maps `[low, high]` to `[-1, 1]` per action dimension (docs/mqe.md section 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionNorm {
    /// Dataset value mapped to -1, per dimension.
    pub low: Vec<f32>,
    /// Dataset value mapped to +1, per dimension.
    pub high: Vec<f32>,
}

impl ActionNorm {
    /// The identity map for data already in [-1, 1].
    pub fn identity(action_dim: usize) -> Self {
        Self {
            low: vec![-1.0; action_dim],
            high: vec![1.0; action_dim],
        }
    }

    /// Map from explicit bounds; each `high` must exceed its `low`.
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Result<Self> {
        let norm = Self { low, high };
        norm.validate()?;
        Ok(norm)
    }

    /// Number of action dimensions.
    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// Checks lengths and that every range is finite and non-empty.
    pub fn validate(&self) -> Result<()> {
        if self.low.len() != self.high.len() {
            return Err(MqeError::InvalidConfig {
                field: "action.norm".into(),
                reason: format!(
                    "low has {} entries, high has {}",
                    self.low.len(),
                    self.high.len()
                ),
            });
        }
        for (i, (lo, hi)) in self.low.iter().zip(&self.high).enumerate() {
            if !(lo.is_finite() && hi.is_finite() && hi > lo) {
                return Err(MqeError::InvalidConfig {
                    field: format!("action.norm[{i}]"),
                    reason: format!("need finite low < high, got [{lo}, {hi}]"),
                });
            }
        }
        Ok(())
    }

    fn check_len(&self, n: usize) -> Result<()> {
        if n == self.dim() {
            Ok(())
        } else {
            Err(MqeError::InvalidConfig {
                field: "action".into(),
                reason: format!(
                    "has {n} entries, the action normalisation has {}",
                    self.dim()
                ),
            })
        }
    }

    /// Dataset action -> [-1, 1] space (not clipped). Written as `(2a - (lo + hi)) / (hi - lo)`
    /// so the identity map is exact in f32.
    pub fn normalise(&self, action: &[f32]) -> Result<Vec<f32>> {
        self.check_len(action.len())?;
        Ok(action
            .iter()
            .zip(self.low.iter().zip(&self.high))
            .map(|(a, (lo, hi))| (2.0 * a - (lo + hi)) / (hi - lo))
            .collect())
    }

    /// [-1, 1] space -> dataset action.
    pub fn denormalise(&self, action: &[f32]) -> Result<Vec<f32>> {
        self.check_len(action.len())?;
        Ok(action
            .iter()
            .zip(self.low.iter().zip(&self.high))
            .map(|(a, (lo, hi))| (a * (hi - lo) + (lo + hi)) * 0.5)
            .collect())
    }
}
