//! The action normalisation of docs/mqe.md section 6, fitted in one place for every source of
//! data: the training cache (`bridge-train prepare`) and the in-memory datasets `bridge-train
//! fit` reads (OGBench `.npz`, the U-maze) both call [`ActionBounds::fit`].
//!
//! The map sends each dimension's 1st percentile to -1 and its 99th to +1, computed over the
//! transitions only (an episode's last row has no next observation, and sources that record no
//! action there store padding). A gripper dimension, when the data have one in {0, 1}, maps
//! {0, 1} to {-1, 1} whatever its percentiles. Data whose actions already lie in [-1, 1] by
//! their own convention (OGBench) keep the identity ([`ActionBounds::unit_box`]).

use serde::{Deserialize, Serialize};

use crate::stats::quantile;

/// Lower and upper quantiles mapped to -1 and +1.
pub const NORM_PERCENTILES: [f64; 2] = [0.01, 0.99];

/// The per-dimension affine action map: `low` maps to -1, `high` to +1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBounds {
    /// Dataset value mapped to -1, per dimension.
    pub low: Vec<f32>,
    /// Dataset value mapped to +1, per dimension.
    pub high: Vec<f32>,
    /// The quantiles `low` and `high` are, for every dimension but the gripper.
    pub percentiles: [f64; 2],
    /// The gripper dimension, mapped {0, 1} -> {-1, 1} (low 0, high 1), if the data have one.
    #[serde(default)]
    pub gripper_dim: Option<usize>,
    /// Transitions the quantiles were computed over (pad rows excluded).
    pub transitions: u64,
}

impl ActionBounds {
    /// The map fitted over the actions of `transition_rows`: row indices into row-major
    /// actions of `dim` values per row, where `action(i)` is the i-th value (a slice index, or
    /// a read from a memory-mapped file). A dimension whose percentiles coincide (a constant
    /// action) gets a unit half-width around its value, so that the map stays invertible.
    /// Non-finite values are left out. None when there is no transition.
    pub fn fit(
        action: impl Fn(usize) -> f32,
        dim: usize,
        transition_rows: &[u32],
        gripper_dim: Option<usize>,
    ) -> Option<ActionBounds> {
        if transition_rows.is_empty() || dim == 0 {
            return None;
        }
        let mut column = Vec::with_capacity(transition_rows.len());
        let (mut low, mut high) = (Vec::with_capacity(dim), Vec::with_capacity(dim));
        for d in 0..dim {
            if Some(d) == gripper_dim {
                low.push(0.0);
                high.push(1.0);
                continue;
            }
            column.clear();
            column.extend(
                transition_rows
                    .iter()
                    .map(|&row| action(row as usize * dim + d))
                    .filter(|a| a.is_finite()),
            );
            let lo = quantile(&mut column, NORM_PERCENTILES[0]).unwrap_or(0.0) as f32;
            let hi = quantile(&mut column, NORM_PERCENTILES[1]).unwrap_or(0.0) as f32;
            let (lo, hi) = if hi - lo > 1e-6 {
                (lo, hi)
            } else {
                (lo - 1.0, lo + 1.0)
            };
            low.push(lo);
            high.push(hi);
        }
        Some(ActionBounds {
            low,
            high,
            percentiles: NORM_PERCENTILES,
            gripper_dim,
            transitions: transition_rows.len() as u64,
        })
    }

    /// The identity map, for data whose actions are in [-1, 1] by convention.
    pub fn unit_box(dim: usize, transitions: u64) -> ActionBounds {
        ActionBounds {
            low: vec![-1.0; dim],
            high: vec![1.0; dim],
            percentiles: [0.0, 1.0],
            gripper_dim: None,
            transitions,
        }
    }
}

/// Whether every action of `transition_rows` lies in [-1, 1] (OGBench's convention).
pub fn in_unit_box(actions: &[f32], dim: usize, transition_rows: &[u32]) -> bool {
    transition_rows.iter().all(|&row| {
        let start = row as usize * dim;
        actions[start..start + dim]
            .iter()
            .all(|a| (-1.0..=1.0).contains(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two episodes of 51 and 52 rows; dimension 0 runs 0..=100 over the transitions and the
    /// pad rows hold 1000; dimension 1 is constant 5; the last dimension is the gripper.
    fn two_episodes() -> (Vec<f32>, Vec<u32>) {
        let mut actions = Vec::new();
        let mut transitions = Vec::new();
        let mut value = 0.0f32;
        let mut row = 0u32;
        for len in [51u32, 52] {
            for t in 0..len {
                let mut a = [5.0f32; 3];
                let last = t + 1 == len;
                a[0] = if last { 1000.0 } else { value };
                a[2] = 0.3;
                if !last {
                    value += 1.0;
                    transitions.push(row);
                }
                actions.extend_from_slice(&a);
                row += 1;
            }
        }
        (actions, transitions)
    }

    #[test]
    fn percentiles_over_transitions_with_a_fixed_gripper() {
        let (actions, rows) = two_episodes();
        let bounds = ActionBounds::fit(|i| actions[i], 3, &rows, Some(2)).unwrap();
        assert_eq!(bounds.transitions, 101);
        assert!((bounds.low[0] - 1.0).abs() < 1e-4, "{:?}", bounds.low);
        assert!((bounds.high[0] - 99.0).abs() < 1e-4, "{:?}", bounds.high);
        assert_eq!((bounds.low[1], bounds.high[1]), (4.0, 6.0), "constant");
        assert_eq!((bounds.low[2], bounds.high[2]), (0.0, 1.0), "gripper");
        assert!(ActionBounds::fit(|i| actions[i], 3, &[], Some(2)).is_none());
    }

    #[test]
    fn without_a_gripper_every_dimension_takes_its_percentiles() {
        let (actions, rows) = two_episodes();
        let bounds = ActionBounds::fit(|i| actions[i], 3, &rows, None).unwrap();
        assert_eq!((bounds.low[2], bounds.high[2]), (0.3 - 1.0, 0.3 + 1.0));
        assert_eq!(bounds.gripper_dim, None);
    }

    #[test]
    fn the_unit_box_test_reads_transitions_only() {
        let actions = [0.5f32, -1.0, 7.0, 7.0];
        assert!(in_unit_box(&actions, 2, &[0]));
        assert!(!in_unit_box(&actions, 2, &[0, 1]));
        let identity = ActionBounds::unit_box(2, 1);
        assert_eq!((identity.low, identity.high), (vec![-1.0; 2], vec![1.0; 2]));
    }
}
