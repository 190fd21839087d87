//! The MQE batch sampler (docs/mqe.md section 2): transitions, geometric value goals, waypoints,
//! actor goals, and the random-crop augmentation for pixels. Seeded and reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Obs};

/// Sampling settings. Every field has a default (see [`SamplerConfig::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Batch elements per step. Default 256.
    pub batch_size: usize,
    /// Discount of the value-goal horizon: K ~ Geometric(1 - gamma) on {1, 2, ...}.
    /// Default 0.995 (OGBench mazes); Bridge data uses 0.98.
    pub gamma: f64,
    /// Waypoint horizon: k ~ Geometric(1 - lambda), capped at K. Default 0.95.
    pub lambda: f64,
    /// Probability that the waypoint is the next observation (k = 1). Default 0.2; pixels use 0.1.
    pub one_step_prob: f64,
    /// Probability that an actor goal is drawn uniformly from the whole dataset instead of the
    /// future of the same trajectory. Default 0.0; OGBench stitch datasets use 0.5.
    pub random_goal_share: f64,
    /// Edge-replication padding of the random crop, in pixels. Default 3.
    pub crop_pad_px: usize,
    /// Probability, per batch, of applying the random crop (pixels only). Default 0.5.
    pub crop_prob: f64,
}

impl Default for SamplerConfig {
    /// The OGBench state-based maze settings of docs/mqe.md.
    fn default() -> Self {
        Self {
            batch_size: 256,
            gamma: 0.995,
            lambda: 0.95,
            one_step_prob: 0.2,
            random_goal_share: 0.0,
            crop_pad_px: 3,
            crop_prob: 0.5,
        }
    }
}

impl SamplerConfig {
    /// OGBench "stitch" datasets: half of the actor goals come from the whole dataset.
    pub fn ogbench_stitch() -> Self {
        Self {
            random_goal_share: 0.5,
            ..Self::default()
        }
    }

    /// Bridge pixel data (trajectories of about 36 steps): gamma 0.98, one-step share 0.1.
    pub fn bridge_pixels() -> Self {
        Self {
            gamma: 0.98,
            one_step_prob: 0.1,
            ..Self::default()
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), SamplerError> {
        if self.batch_size == 0 {
            return Err(invalid("batch_size", 0.0, ">= 1"));
        }
        check_range("gamma", self.gamma, 0.0..1.0, "in [0, 1)")?;
        check_range("lambda", self.lambda, 0.0..1.0, "in [0, 1)")?;
        for (field, value) in [
            ("one_step_prob", self.one_step_prob),
            ("random_goal_share", self.random_goal_share),
            ("crop_prob", self.crop_prob),
        ] {
            check_range(field, value, 0.0..=1.0, "in [0, 1]")?;
        }
        Ok(())
    }
}

fn check_range(
    field: &'static str,
    value: f64,
    range: impl std::ops::RangeBounds<f64>,
    expected: &'static str,
) -> Result<(), SamplerError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, value, expected))
    }
}

fn invalid(field: &'static str, value: f64, expected: &'static str) -> SamplerError {
    SamplerError::InvalidConfig {
        field,
        value,
        expected,
    }
}

/// Why a batch could not be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    #[error("sampler config: `{field}` = {value}, expected {expected}")]
    InvalidConfig {
        field: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("the dataset has no transitions (every episode is a single row)")]
    NoTransitions,
    #[error(
        "batch buffers were made for {expected}, but the dataset/indices give {found}; make them with Sampler::buffers"
    )]
    BufferMismatch { expected: String, found: String },
}

/// Row indices of one batch; element i of every field belongs to batch element i.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexBatch {
    /// Transition row: s = o_t, a = a_t.
    pub t: Vec<u32>,
    /// t + 1: s'.
    pub next: Vec<u32>,
    /// t + K: the value goal g.
    pub goal: Vec<u32>,
    /// K after truncation to the episode end.
    pub goal_offset: Vec<u32>,
    /// t + k: the waypoint w.
    pub waypoint: Vec<u32>,
    /// k (the backup discount is gamma^k).
    pub waypoint_offset: Vec<u32>,
    /// The actor's goal row.
    pub actor_goal: Vec<u32>,
}

impl IndexBatch {
    pub fn with_capacity(batch_size: usize) -> Self {
        let v = || Vec::with_capacity(batch_size);
        Self {
            t: v(),
            next: v(),
            goal: v(),
            goal_offset: v(),
            waypoint: v(),
            waypoint_offset: v(),
            actor_goal: v(),
        }
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    fn clear(&mut self) {
        for v in [
            &mut self.t,
            &mut self.next,
            &mut self.goal,
            &mut self.goal_offset,
            &mut self.waypoint,
            &mut self.waypoint_offset,
            &mut self.actor_goal,
        ] {
            v.clear();
        }
    }

    /// The five observation rows of element i, in [`ObsRole`] order.
    fn obs_rows(&self, i: usize) -> [u32; 5] {
        [
            self.t[i],
            self.next[i],
            self.goal[i],
            self.waypoint[i],
            self.actor_goal[i],
        ]
    }
}

/// Gathered observations for the five roles, each `batch_size * row_len` values, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleBuffers<T> {
    /// s = o_t
    pub obs: Vec<T>,
    /// s' = o_{t+1}
    pub next: Vec<T>,
    /// value goal g
    pub goal: Vec<T>,
    /// waypoint w
    pub waypoint: Vec<T>,
    /// actor goal
    pub actor_goal: Vec<T>,
}

impl<T: Copy + Default> RoleBuffers<T> {
    fn zeroed(len: usize) -> Self {
        let v = || vec![T::default(); len];
        Self {
            obs: v(),
            next: v(),
            goal: v(),
            waypoint: v(),
            actor_goal: v(),
        }
    }

    fn roles_mut(&mut self) -> [&mut Vec<T>; 5] {
        [
            &mut self.obs,
            &mut self.next,
            &mut self.goal,
            &mut self.waypoint,
            &mut self.actor_goal,
        ]
    }
}

/// Observation buffers: f32 state vectors, or u8 HWC frames (the trainer scales by 1/255).
#[derive(Debug, Clone, PartialEq)]
pub enum ObsBuffers {
    State(RoleBuffers<f32>),
    Pixels(RoleBuffers<u8>),
}

/// Preallocated batch storage, reused across steps: gathering allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchBuffers {
    batch_size: usize,
    obs_shape: Vec<usize>,
    action_dim: usize,
    indices: IndexBatch,
    obs: ObsBuffers,
    actions: Vec<f32>,
    crop_offsets: Vec<[u32; 2]>,
    cropped: bool,
}

impl BatchBuffers {
    /// Buffers for `batch_size` elements of `dataset`'s shapes.
    pub fn new(dataset: &Dataset, batch_size: usize) -> Self {
        let row_len = dataset.obs().row_len();
        let obs = match dataset.obs() {
            Obs::State { .. } => ObsBuffers::State(RoleBuffers::zeroed(batch_size * row_len)),
            Obs::Pixels { .. } => ObsBuffers::Pixels(RoleBuffers::zeroed(batch_size * row_len)),
        };
        Self {
            batch_size,
            obs_shape: dataset.obs().row_shape(),
            action_dim: dataset.action_dim(),
            indices: IndexBatch::with_capacity(batch_size),
            obs,
            actions: vec![0.0; batch_size * dataset.action_dim()],
            crop_offsets: vec![[0, 0]; batch_size],
            cropped: false,
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Per-element observation shape: `[dim]` or `[height, width, channels]`.
    pub fn obs_shape(&self) -> &[usize] {
        &self.obs_shape
    }

    pub fn action_dim(&self) -> usize {
        self.action_dim
    }

    /// The rows this batch was gathered from.
    pub fn indices(&self) -> &IndexBatch {
        &self.indices
    }

    pub fn obs(&self) -> &ObsBuffers {
        &self.obs
    }

    /// State observations, or None for pixel data.
    pub fn state(&self) -> Option<&RoleBuffers<f32>> {
        match &self.obs {
            ObsBuffers::State(b) => Some(b),
            ObsBuffers::Pixels(_) => None,
        }
    }

    /// Pixel observations, or None for state data.
    pub fn pixels(&self) -> Option<&RoleBuffers<u8>> {
        match &self.obs {
            ObsBuffers::Pixels(b) => Some(b),
            ObsBuffers::State(_) => None,
        }
    }

    /// a_t, `batch_size * action_dim` values.
    pub fn actions(&self) -> &[f32] {
        &self.actions
    }

    /// Per-element crop offsets `[dy, dx]`, each in `[0, 2 * crop_pad_px]` (the padded image's
    /// top-left corner of the crop), when this batch was cropped; None otherwise.
    pub fn crop_offsets(&self) -> Option<&[[u32; 2]]> {
        self.cropped.then_some(self.crop_offsets.as_slice())
    }

    fn check_fits(&self, dataset: &Dataset, indices: &IndexBatch) -> Result<(), SamplerError> {
        let same_kind = matches!(
            (&self.obs, dataset.obs()),
            (ObsBuffers::State(_), Obs::State { .. }) | (ObsBuffers::Pixels(_), Obs::Pixels { .. })
        );
        let expected = (self.batch_size, &self.obs_shape, self.action_dim);
        let lengths = [
            indices.next.len(),
            indices.goal.len(),
            indices.goal_offset.len(),
            indices.waypoint.len(),
            indices.waypoint_offset.len(),
            indices.actor_goal.len(),
        ];
        let ragged = lengths.iter().any(|&len| len != indices.len());
        let found = (
            if ragged { usize::MAX } else { indices.len() },
            &dataset.obs().row_shape(),
            dataset.action_dim(),
        );
        if same_kind && expected == found {
            return Ok(());
        }
        let describe = |(batch, shape, action_dim): (usize, &Vec<usize>, usize)| {
            format!("batch {batch}, obs shape {shape:?}, action_dim {action_dim}")
        };
        Err(SamplerError::BufferMismatch {
            expected: describe(expected),
            found: describe(found),
        })
    }
}

/// Draws a Geometric(1 - discount) variable on {1, 2, ...}: the trial of the first success when
/// each trial succeeds with probability `1 - discount`. Mean `1 / (1 - discount)`.
///
/// Inverse transform: `floor(ln U / ln discount) + 1` with U uniform on (0, 1], so that
/// P(K > k) = P(U <= discount^k) = discount^k exactly. `discount` must be in [0, 1).
pub fn sample_geometric<R: Rng + ?Sized>(rng: &mut R, discount: f64) -> u64 {
    if discount <= 0.0 {
        return 1;
    }
    // random::<f64>() is uniform on [0, 1); 1 - it is uniform on (0, 1], so ln never sees 0.
    let u = 1.0 - rng.random::<f64>();
    let failures = (u.ln() / discount.ln()).floor();
    // Saturating float-to-int conversion; failures >= 0 because both logs are <= 0.
    (failures as u64).saturating_add(1)
}

/// The seeded MQE batch sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: StdRng,
}

impl Sampler {
    /// Validates `config`; `seed` fixes every draw (same seed, same data -> same batches).
    pub fn new(config: SamplerConfig, seed: u64) -> Result<Self, SamplerError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Buffers sized for this sampler's batch size and `dataset`'s shapes.
    pub fn buffers(&self, dataset: &Dataset) -> BatchBuffers {
        BatchBuffers::new(dataset, self.config.batch_size)
    }

    /// Samples indices and gathers them into `buffers` (made by [`Sampler::buffers`]).
    pub fn sample(
        &mut self,
        dataset: &Dataset,
        buffers: &mut BatchBuffers,
    ) -> Result<(), SamplerError> {
        // Take the index vectors out so they can be filled while the rest of `buffers` is
        // written; an empty IndexBatch does not allocate, and the vectors go back afterwards.
        let mut indices = std::mem::take(&mut buffers.indices);
        let result = self
            .sample_indices(dataset, &mut indices)
            .and_then(|()| self.gather_fields(dataset, &indices, buffers));
        buffers.indices = indices;
        result
    }

    /// Fills `out` with `batch_size` elements drawn as in docs/mqe.md section 2.
    pub fn sample_indices(
        &mut self,
        dataset: &Dataset,
        out: &mut IndexBatch,
    ) -> Result<(), SamplerError> {
        let transitions = dataset.transition_rows();
        if transitions.is_empty() {
            return Err(SamplerError::NoTransitions);
        }
        out.clear();
        for _ in 0..self.config.batch_size {
            let t = transitions[self.rng.random_range(0..transitions.len())];
            self.push_element(dataset, t, out);
        }
        Ok(())
    }

    fn push_element(&mut self, dataset: &Dataset, t: u32, out: &mut IndexBatch) {
        let end = dataset.row_episode_ends()[t as usize];
        let horizon = u64::from(end - t); // >= 1: t is never an episode's last row
        let goal_offset = sample_geometric(&mut self.rng, self.config.gamma).min(horizon);
        let mut waypoint_offset = sample_geometric(&mut self.rng, self.config.lambda)
            .min(horizon)
            .min(goal_offset);
        if self.rng.random_bool(self.config.one_step_prob) {
            waypoint_offset = 1;
        }
        let actor_goal = if self.rng.random_bool(self.config.random_goal_share) {
            // Uniform over the selected rows; for a whole dataset the same draw as before
            // subsets existed (member_row(i) = i), so seeded streams are unchanged.
            dataset.member_row(self.rng.random_range(0..dataset.len()))
        } else {
            self.rng.random_range(t + 1..=end)
        };
        // Both offsets are <= horizon = end - t, which fits in u32.
        let goal_offset = goal_offset as u32;
        let waypoint_offset = waypoint_offset as u32;
        out.t.push(t);
        out.next.push(t + 1);
        out.goal.push(t + goal_offset);
        out.goal_offset.push(goal_offset);
        out.waypoint.push(t + waypoint_offset);
        out.waypoint_offset.push(waypoint_offset);
        out.actor_goal.push(actor_goal);
    }

    /// Gathers the rows of `indices` into `buffers` (crop included, for pixels).
    pub fn gather(
        &mut self,
        dataset: &Dataset,
        indices: &IndexBatch,
        buffers: &mut BatchBuffers,
    ) -> Result<(), SamplerError> {
        self.gather_fields(dataset, indices, buffers)?;
        buffers.indices.clone_from(indices);
        Ok(())
    }

    fn gather_fields(
        &mut self,
        dataset: &Dataset,
        indices: &IndexBatch,
        buffers: &mut BatchBuffers,
    ) -> Result<(), SamplerError> {
        buffers.check_fits(dataset, indices)?;
        if let Some(&row) = indices
            .obs_rows_max()
            .filter(|&&row| row as usize >= dataset.storage_rows())
        {
            return Err(SamplerError::BufferMismatch {
                expected: format!("row indices below {}", dataset.storage_rows()),
                found: format!("row {row}"),
            });
        }
        gather_actions(dataset, &indices.t, &mut buffers.actions);
        buffers.cropped = false;
        match (dataset.obs(), &mut buffers.obs) {
            (Obs::State { data, dim }, ObsBuffers::State(roles)) => {
                gather_states(data, *dim, indices, roles);
            }
            (
                Obs::Pixels {
                    data,
                    height,
                    width,
                    channels,
                },
                ObsBuffers::Pixels(roles),
            ) => {
                let frame = FrameShape {
                    height: *height,
                    width: *width,
                    channels: *channels,
                };
                let crop = self.rng.random_bool(self.config.crop_prob);
                self.draw_crop_offsets(crop, &mut buffers.crop_offsets);
                buffers.cropped = crop;
                let pad = self.config.crop_pad_px as isize;
                gather_frames(
                    data.as_slice(),
                    frame,
                    indices,
                    &buffers.crop_offsets,
                    pad,
                    roles,
                );
            }
            // check_fits has matched the kinds.
            _ => {}
        }
        Ok(())
    }

    /// Each element's own offset in [0, 2 * pad]; the centre offset (no shift) when not cropping.
    fn draw_crop_offsets(&mut self, crop: bool, offsets: &mut [[u32; 2]]) {
        let pad = self.config.crop_pad_px as u32;
        for offset in offsets.iter_mut() {
            *offset = if crop {
                [
                    self.rng.random_range(0..=2 * pad),
                    self.rng.random_range(0..=2 * pad),
                ]
            } else {
                [pad, pad]
            };
        }
    }
}

impl IndexBatch {
    fn obs_rows_max(&self) -> Option<&u32> {
        [
            &self.t,
            &self.next,
            &self.goal,
            &self.waypoint,
            &self.actor_goal,
        ]
        .into_iter()
        .filter_map(|v| v.iter().max())
        .max()
    }
}

fn gather_actions(dataset: &Dataset, rows: &[u32], out: &mut [f32]) {
    let dim = dataset.action_dim();
    let actions = dataset.actions();
    for (dst, &row) in out.chunks_exact_mut(dim).zip(rows) {
        let row = row as usize;
        dst.copy_from_slice(&actions[row * dim..(row + 1) * dim]);
    }
}

fn gather_states(data: &[f32], dim: usize, indices: &IndexBatch, roles: &mut RoleBuffers<f32>) {
    for (role, buffer) in roles.roles_mut().into_iter().enumerate() {
        for (i, dst) in buffer.chunks_exact_mut(dim).enumerate() {
            let row = indices.obs_rows(i)[role] as usize;
            dst.copy_from_slice(&data[row * dim..(row + 1) * dim]);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameShape {
    height: usize,
    width: usize,
    channels: usize,
}

impl FrameShape {
    fn len(self) -> usize {
        self.height * self.width * self.channels
    }
}

fn gather_frames(
    data: &[u8],
    frame: FrameShape,
    indices: &IndexBatch,
    offsets: &[[u32; 2]],
    pad: isize,
    roles: &mut RoleBuffers<u8>,
) {
    let len = frame.len();
    for (role, buffer) in roles.roles_mut().into_iter().enumerate() {
        for (i, dst) in buffer.chunks_exact_mut(len).enumerate() {
            let row = indices.obs_rows(i)[role] as usize;
            let src = &data[row * len..(row + 1) * len];
            let [dy, dx] = offsets[i];
            let shift = [dy as isize - pad, dx as isize - pad];
            copy_shifted_frame(src, dst, frame, shift);
        }
    }
}

/// Writes `dst(y, x) = src(clamp(y + shift_y), clamp(x + shift_x))`: the same as padding `src`
/// by edge replication and cropping back at offset `shift + pad`, without a padded copy.
fn copy_shifted_frame(
    src: &[u8],
    dst: &mut [u8],
    frame: FrameShape,
    [shift_y, shift_x]: [isize; 2],
) {
    if shift_y == 0 && shift_x == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let FrameShape {
        height,
        width,
        channels,
    } = frame;
    let row_len = width * channels;
    let w = width as isize;
    // Columns [0, lo) replicate column 0, [lo, hi) copy one run, [hi, width) replicate the last.
    let lo = (-shift_x).clamp(0, w);
    let hi = (w - shift_x).clamp(lo, w);
    let (lo, hi) = (lo as usize, hi as usize);
    for (y, dst_row) in dst.chunks_exact_mut(row_len).enumerate() {
        let sy = (y as isize + shift_y).clamp(0, height as isize - 1) as usize;
        let src_row = &src[sy * row_len..(sy + 1) * row_len];
        let first = &src_row[..channels];
        let last = &src_row[row_len - channels..];
        for px in dst_row[..lo * channels].chunks_exact_mut(channels) {
            px.copy_from_slice(first);
        }
        if lo < hi {
            let src_lo = (lo as isize + shift_x) as usize;
            let src_hi = (hi as isize + shift_x) as usize;
            dst_row[lo * channels..hi * channels]
                .copy_from_slice(&src_row[src_lo * channels..src_hi * channels]);
        }
        for px in dst_row[hi * channels..].chunks_exact_mut(channels) {
            px.copy_from_slice(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: build the padded image explicitly, then crop.
    fn pad_then_crop(src: &[u8], frame: FrameShape, pad: usize, [dy, dx]: [usize; 2]) -> Vec<u8> {
        let FrameShape {
            height: h,
            width: w,
            channels: c,
        } = frame;
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let mut padded = vec![0u8; ph * pw * c];
        for y in 0..ph {
            for x in 0..pw {
                let sy = (y as isize - pad as isize).clamp(0, h as isize - 1) as usize;
                let sx = (x as isize - pad as isize).clamp(0, w as isize - 1) as usize;
                let s = (sy * w + sx) * c;
                padded[(y * pw + x) * c..][..c].copy_from_slice(&src[s..s + c]);
            }
        }
        let mut out = Vec::with_capacity(h * w * c);
        for y in 0..h {
            let start = ((y + dy) * pw + dx) * c;
            out.extend_from_slice(&padded[start..start + w * c]);
        }
        out
    }

    #[test]
    fn shifted_copy_matches_explicit_pad_and_crop() {
        let frame = FrameShape {
            height: 5,
            width: 7,
            channels: 2,
        };
        let src: Vec<u8> = (0..frame.len()).map(|v| (v * 7 % 251) as u8).collect();
        for pad in [0usize, 1, 3, 8] {
            for dy in 0..=2 * pad {
                for dx in 0..=2 * pad {
                    let mut dst = vec![0u8; frame.len()];
                    let shift = [dy as isize - pad as isize, dx as isize - pad as isize];
                    copy_shifted_frame(&src, &mut dst, frame, shift);
                    assert_eq!(
                        dst,
                        pad_then_crop(&src, frame, pad, [dy, dx]),
                        "pad {pad} at {dy},{dx}"
                    );
                }
            }
        }
    }

    #[test]
    fn geometric_of_zero_discount_is_one() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| sample_geometric(&mut rng, 0.0) == 1));
    }

    #[test]
    fn config_rejects_out_of_range_fields() {
        let bad = SamplerConfig {
            gamma: 1.0,
            ..SamplerConfig::default()
        };
        let err = bad.validate().unwrap_err();
        assert!(err.to_string().contains("gamma"), "{err}");
        let bad = SamplerConfig {
            one_step_prob: 1.5,
            ..SamplerConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("one_step_prob")
        );
        let bad = SamplerConfig {
            batch_size: 0,
            ..SamplerConfig::default()
        };
        assert!(Sampler::new(bad, 0).is_err());
        let bad = SamplerConfig {
            lambda: f64::NAN,
            ..SamplerConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(SamplerConfig::bridge_pixels().validate().is_ok());
        assert!(SamplerConfig::ogbench_stitch().validate().is_ok());
    }

    #[test]
    fn subsets_sample_only_their_own_episodes() {
        let obs = Obs::State {
            data: (0..12).map(|v| v as f32).collect(),
            dim: 1,
        };
        let all = Dataset::from_episode_lengths(obs, vec![0.0; 12], 1, &[4, 4, 4]).unwrap();
        let subset = all.select_episodes(|e| e != 1).unwrap();
        let config = SamplerConfig {
            batch_size: 512,
            random_goal_share: 1.0,
            ..SamplerConfig::default()
        };
        let mut sampler = Sampler::new(config, 9).unwrap();
        let mut buffers = sampler.buffers(&subset);
        sampler.sample(&subset, &mut buffers).unwrap();
        let idx = buffers.indices();
        let outside = |row: &u32| (4..8).contains(row);
        for rows in [&idx.t, &idx.next, &idx.goal, &idx.waypoint, &idx.actor_goal] {
            assert!(!rows.iter().any(outside), "{rows:?}");
        }
        // Random actor goals still reach both selected episodes.
        assert!(idx.actor_goal.iter().any(|&r| r < 4) && idx.actor_goal.iter().any(|&r| r >= 8));
        let states = buffers.state().unwrap();
        assert_eq!(states.actor_goal[0], idx.actor_goal[0] as f32);
    }
}
