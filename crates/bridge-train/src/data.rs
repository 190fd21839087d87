//! From `bridge-data` (candle-free) to `mqe`: observation kinds, the action normalisation of
//! docs/mqe.md section 6, and sampler buffers -> [`mqe::Batch`] tensors.

use bridge_data::norm::{ActionBounds, in_unit_box};
use bridge_data::{BatchBuffers, ObsBuffers, SamplerConfig};
use bridge_data::{Dataset, Obs};
use candle_core::{Device, Tensor};
use mqe::{ActionNorm, Batch, ObsKind, TrainConfig};

/// Why a dataset cannot be trained on as it is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Images that are not square (the encoders take `size_px` x `size_px`).
    #[error("images are {height}x{width}; the pixel encoders need square images")]
    NotSquare { height: usize, width: usize },
    /// A tensor could not be built from the buffers.
    #[error("building batch tensors: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A cache's recorded action normalisation is unusable (wrong length, empty range).
    #[error("the action normalisation: {0}")]
    ActionNorm(#[source] mqe::MqeError),
    /// No row has a next observation, so there is no action to fit the normalisation to.
    #[error("the data have no transition (every episode is one row): nothing to train on")]
    NoTransitions,
}

/// The model's observation kind for `dataset`.
pub fn obs_kind(dataset: &Dataset) -> Result<ObsKind, DataError> {
    match dataset.obs() {
        Obs::State { dim, .. } => Ok(ObsKind::State { dim: *dim }),
        Obs::Pixels {
            height,
            width,
            channels,
            ..
        } if height == width => Ok(ObsKind::Pixels {
            size_px: *height,
            channels: *channels,
        }),
        Obs::Pixels { height, width, .. } => Err(DataError::NotSquare {
            height: *height,
            width: *width,
        }),
    }
}

/// The sampler settings of a training configuration.
pub fn sampler_config(train: &TrainConfig) -> SamplerConfig {
    SamplerConfig {
        batch_size: train.batch_size,
        gamma: train.gamma,
        lambda: train.waypoint_lambda,
        one_step_prob: train.one_step_prob,
        random_goal_share: train.actor_random_goal_share,
        crop_pad_px: train.crop_pad_px,
        crop_prob: train.crop_prob,
    }
}

/// The model's action map for an in-memory dataset (docs/mqe.md section 6): the identity when
/// every transition's action already lies in [-1, 1] (OGBench's convention), otherwise the map
/// fitted by [`ActionBounds::fit`] over the dataset's transitions, the same fit the training
/// cache records.
pub fn action_norm_for(dataset: &Dataset) -> Result<ActionNorm, DataError> {
    let (actions, dim) = (dataset.actions(), dataset.action_dim());
    let rows = dataset.transition_rows();
    let bounds = if in_unit_box(actions, dim, rows) {
        ActionBounds::unit_box(dim, rows.len() as u64)
    } else {
        ActionBounds::fit(|i| actions[i], dim, rows, None).ok_or(DataError::NoTransitions)?
    };
    action_norm_from_bounds(&bounds)
}

/// The model's action map from fitted bounds (a training cache's recorded ones, or
/// [`action_norm_for`]'s).
pub fn action_norm_from_bounds(bounds: &ActionBounds) -> Result<ActionNorm, DataError> {
    ActionNorm::new(bounds.low.clone(), bounds.high.clone()).map_err(DataError::ActionNorm)
}

/// Turns sampler buffers into [`Batch`] tensors, normalising actions on the way. Holds scratch
/// space so a step allocates only the tensors themselves.
#[derive(Debug)]
pub struct BatchConverter {
    device: Device,
    norm: ActionNorm,
    actions: Vec<f32>,
    offsets: Vec<f32>,
}

impl BatchConverter {
    /// A converter onto `device` with the model's action map.
    pub fn new(device: &Device, norm: ActionNorm) -> Self {
        Self {
            device: device.clone(),
            norm,
            actions: Vec::new(),
            offsets: Vec::new(),
        }
    }

    /// The batch in `buffers`. Actions are mapped to [-1, 1] and clipped there: the policy's
    /// output lives in that box, and data beyond the 1st..99th percentiles are outliers.
    pub fn convert(&mut self, buffers: &BatchBuffers) -> Result<Batch, DataError> {
        let b = buffers.batch_size();
        let dim = buffers.action_dim();
        self.actions.clear();
        for action in buffers.actions().chunks_exact(dim) {
            self.actions.extend(
                action
                    .iter()
                    .zip(self.norm.low.iter().zip(&self.norm.high))
                    .map(|(a, (lo, hi))| (2.0 * (a - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0)),
            );
        }
        self.offsets.clear();
        self.offsets
            .extend(buffers.indices().waypoint_offset.iter().map(|&k| k as f32));
        let mut shape = vec![b];
        shape.extend_from_slice(buffers.obs_shape());
        let dev = &self.device;
        let (obs, next_obs, goal, waypoint, actor_goal) = match buffers.obs() {
            ObsBuffers::State(r) => (
                Tensor::from_slice(&r.obs, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.next, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.goal, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.waypoint, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.actor_goal, shape.as_slice(), dev)?,
            ),
            ObsBuffers::Pixels(r) => (
                Tensor::from_slice(&r.obs, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.next, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.goal, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.waypoint, shape.as_slice(), dev)?,
                Tensor::from_slice(&r.actor_goal, shape.as_slice(), dev)?,
            ),
        };
        Ok(Batch {
            obs,
            next_obs,
            goal,
            waypoint,
            waypoint_offset: Tensor::from_slice(&self.offsets, b, dev)?,
            actor_goal,
            action: Tensor::from_slice(&self.actions, (b, dim), dev)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_data::Sampler;

    fn dataset(actions: Vec<f32>, action_dim: usize) -> Dataset {
        let rows = actions.len() / action_dim;
        let obs = Obs::State {
            data: (0..rows).map(|i| i as f32).collect(),
            dim: 1,
        };
        Dataset::from_episode_lengths(obs, actions, action_dim, &[rows]).unwrap()
    }

    #[test]
    fn actions_in_the_box_keep_the_identity() {
        let data = dataset(vec![-1.0, 0.5, 1.0, 0.0], 2);
        assert_eq!(action_norm_for(&data).unwrap(), ActionNorm::identity(2));
    }

    #[test]
    fn wide_actions_map_their_percentiles_and_constants_stay_invertible() {
        // Dimension 0 spans 0..=99 over the transitions (1st percentile 0.99, 99th 98.01; the
        // last row's 1000 is no transition); dimension 1 is constant 5.
        let mut actions: Vec<f32> = (0..100).flat_map(|i| [i as f32, 5.0]).collect();
        actions.extend([1000.0, 5.0]);
        let norm = action_norm_for(&dataset(actions, 2)).unwrap();
        assert!((norm.low[0] - 0.99).abs() < 1e-4, "{:?}", norm.low);
        assert!((norm.high[0] - 98.01).abs() < 1e-4, "{:?}", norm.high);
        assert_eq!((norm.low[1], norm.high[1]), (4.0, 6.0));
        norm.validate().unwrap();
    }

    #[test]
    fn converted_batches_have_model_shapes_and_normalised_actions() {
        let actions: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let data = dataset(actions, 2);
        let norm = action_norm_for(&data).unwrap();
        let config = SamplerConfig {
            batch_size: 8,
            ..SamplerConfig::default()
        };
        let mut sampler = Sampler::new(config, 3).unwrap();
        let mut buffers = sampler.buffers(&data);
        sampler.sample(&data, &mut buffers).unwrap();
        let batch = BatchConverter::new(&Device::Cpu, norm.clone())
            .convert(&buffers)
            .unwrap();
        assert_eq!(batch.obs.dims(), &[8, 1]);
        assert_eq!(batch.action.dims(), &[8, 2]);
        assert_eq!(batch.waypoint_offset.dims(), &[8]);
        let got: Vec<f32> = batch.action.flatten_all().unwrap().to_vec1().unwrap();
        let want = norm.normalise(&buffers.actions()[..2]).unwrap();
        assert!((got[0] - want[0].clamp(-1.0, 1.0)).abs() < 1e-6);
        assert!(got.iter().all(|a| (-1.0..=1.0).contains(a)));
    }
}
