//! A source-independent offline dataset: observations, actions and episode structure.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The bytes of a pixel dataset's frames: an owned buffer or a shared read-only storage such
/// as the memory map of a training cache ([`crate::cache`]). Either way it is immutable and
/// reference-counted, so cloning a [`Dataset`] (a validation subset, a loader thread's handle)
/// shares the frames instead of copying them.
#[derive(Clone)]
pub struct FrameBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl FrameBytes {
    /// Frames held by any shared read-only storage (a memory map, a `Vec`).
    pub fn shared(storage: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        Self(storage)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl Deref for FrameBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for FrameBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl FromIterator<u8> for FrameBytes {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<u8>>())
    }
}

impl PartialEq for FrameBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for FrameBytes {}

impl PartialEq<[u8]> for FrameBytes {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for FrameBytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for FrameBytes {
    /// Short for large buffers: a dataset's frames are megabytes to gigabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        let bytes = self.as_slice();
        if bytes.len() <= SHOWN {
            write!(f, "FrameBytes({bytes:?})")
        } else {
            write!(
                f,
                "FrameBytes({} bytes, starting {:?})",
                bytes.len(),
                &bytes[..SHOWN]
            )
        }
    }
}

/// Observations of every row, stored contiguously, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Obs {
    /// Low-dimensional state vectors: `data.len() == rows * dim`.
    State { data: Vec<f32>, dim: usize },
    /// Images, one frame per row, each `height x width x channels` (HWC) bytes.
    Pixels {
        data: FrameBytes,
        height: usize,
        width: usize,
        channels: usize,
    },
}

impl Obs {
    /// Number of values (f32 or u8) in one row's observation.
    pub fn row_len(&self) -> usize {
        match self {
            Obs::State { dim, .. } => *dim,
            Obs::Pixels {
                height,
                width,
                channels,
                ..
            } => height * width * channels,
        }
    }

    /// Per-row shape: `[dim]` for states, `[height, width, channels]` for pixels.
    pub fn row_shape(&self) -> Vec<usize> {
        match self {
            Obs::State { dim, .. } => vec![*dim],
            Obs::Pixels {
                height,
                width,
                channels,
                ..
            } => vec![*height, *width, *channels],
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Obs::State { data, .. } => data.len(),
            Obs::Pixels { data, .. } => data.len(),
        }
    }

    fn kind(&self) -> ObsKind {
        match self {
            Obs::State { .. } => ObsKind::State,
            Obs::Pixels { .. } => ObsKind::Pixels,
        }
    }
}

/// Whether a dataset holds state vectors or images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObsKind {
    State,
    Pixels,
}

/// Counts and dimensions of a dataset, for logs and the checkpoint's data summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSummary {
    pub rows: usize,
    pub episodes: usize,
    /// Rows that have a next observation (every row but the last of each episode).
    pub transitions: usize,
    pub obs_kind: ObsKind,
    /// `[dim]` for states, `[height, width, channels]` for pixels.
    pub obs_shape: Vec<usize>,
    pub action_dim: usize,
    pub min_episode_len: usize,
    pub max_episode_len: usize,
}

/// Why a [`Dataset`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    #[error("the dataset has no rows")]
    Empty,
    #[error("observation row shape {shape:?} has a zero dimension; expected every dimension >= 1")]
    ZeroObsDim { shape: Vec<usize> },
    #[error("action_dim is 0; expected >= 1")]
    ZeroActionDim,
    #[error(
        "observations hold {len} values, not a whole number of rows of {row_len} (shape {shape:?})"
    )]
    RaggedObservations {
        len: usize,
        row_len: usize,
        shape: Vec<usize>,
    },
    #[error("actions hold {len} values, not a whole number of rows of action_dim {action_dim}")]
    RaggedActions { len: usize, action_dim: usize },
    #[error(
        "row counts disagree: {obs_rows} observation rows, {action_rows} action rows, {terminal_rows} terminal flags"
    )]
    LengthMismatch {
        obs_rows: usize,
        action_rows: usize,
        terminal_rows: usize,
    },
    #[error(
        "the last row ({last_row}) is not terminal: the final episode has no end (expected terminals[{last_row}] = 1)"
    )]
    UnterminatedEpisode { last_row: usize },
    #[error("{rows} rows exceed the u32 index range used by the sampler")]
    TooManyRows { rows: usize },
}

/// Offline trajectories from any source (OGBench, BridgeData, ...).
///
/// Every row has an observation and an action. The last row of an episode has no next
/// observation; its action is kept (sources that have none store any value) and never sampled.
///
/// A dataset may be a subset of the episodes of its storage ([`Dataset::select_episodes`]: a
/// training / validation split sharing one memory-mapped cache). Row indices always refer to
/// the storage; [`Dataset::len`] and the sampling populations cover the selected episodes only.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    obs: Obs,
    /// Shared between a dataset and its episode subsets.
    actions: Arc<Vec<f32>>,
    action_dim: usize,
    episode_starts: Vec<u32>,
    episode_ends: Vec<u32>,
    /// Indexed by storage row; shared between a dataset and its episode subsets.
    row_episode_end: Arc<Vec<u32>>,
    transition_rows: Vec<u32>,
    /// The selected rows, ascending, when only some episodes of the storage are selected;
    /// None when every row is (no copy of `0..rows` for whole datasets).
    member_rows: Option<Vec<u32>>,
}

impl Dataset {
    /// Builds a dataset, checking that observations, actions and terminal flags agree in length.
    /// `terminals[i]` is true on the last row of each episode; the final row must be terminal.
    pub fn new(
        obs: Obs,
        actions: Vec<f32>,
        action_dim: usize,
        terminals: &[bool],
    ) -> Result<Self, DatasetError> {
        let rows = check_row_counts(&obs, &actions, action_dim, terminals.len())?;
        if !terminals[rows - 1] {
            return Err(DatasetError::UnterminatedEpisode { last_row: rows - 1 });
        }
        let episode_ends: Vec<u32> = (0..rows)
            .filter(|&row| terminals[row])
            .map(index_u32)
            .collect();
        let episode_starts: Vec<u32> = std::iter::once(0)
            .chain(episode_ends.iter().map(|&end| end + 1))
            .take(episode_ends.len())
            .collect();
        let mut row_episode_end = Vec::with_capacity(rows);
        let mut transition_rows = Vec::with_capacity(rows - episode_ends.len());
        for (&start, &end) in episode_starts.iter().zip(&episode_ends) {
            row_episode_end.extend(std::iter::repeat_n(end, (end - start + 1) as usize));
            transition_rows.extend(start..end);
        }
        Ok(Self {
            obs,
            actions: Arc::new(actions),
            action_dim,
            episode_starts,
            episode_ends,
            row_episode_end: Arc::new(row_episode_end),
            transition_rows,
            member_rows: None,
        })
    }

    /// Builds a dataset from consecutive episodes of the given lengths (rows per episode).
    pub fn from_episode_lengths(
        obs: Obs,
        actions: Vec<f32>,
        action_dim: usize,
        episode_lengths: &[usize],
    ) -> Result<Self, DatasetError> {
        let mut terminals = Vec::with_capacity(episode_lengths.iter().sum());
        for &len in episode_lengths.iter().filter(|&&len| len > 0) {
            terminals.extend(std::iter::repeat_n(false, len - 1));
            terminals.push(true);
        }
        Self::new(obs, actions, action_dim, &terminals)
    }

    pub fn obs(&self) -> &Obs {
        &self.obs
    }

    /// All actions, row-major, `len() * action_dim()` values.
    pub fn actions(&self) -> &[f32] {
        &self.actions
    }

    pub fn action_dim(&self) -> usize {
        self.action_dim
    }

    /// Number of rows (observations) of the selected episodes.
    pub fn len(&self) -> usize {
        self.member_rows
            .as_ref()
            .map_or(self.row_episode_end.len(), Vec::len)
    }

    /// Always false: construction rejects empty data. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows of the storage (observations and actions), selected or not: the bound of every
    /// row index.
    pub fn storage_rows(&self) -> usize {
        self.row_episode_end.len()
    }

    /// The `i`-th selected row (`i < len()`), as a storage row index.
    pub fn member_row(&self, i: usize) -> u32 {
        match &self.member_rows {
            Some(rows) => rows[i],
            None => index_u32(i),
        }
    }

    /// The episodes whose index `e` (in [`Dataset::episode_starts`] order) satisfies `keep(e)`,
    /// sharing this dataset's observations (no frame is copied). Sampling from the result never
    /// yields a row of an unselected episode.
    pub fn select_episodes(
        &self,
        mut keep: impl FnMut(usize) -> bool,
    ) -> Result<Dataset, DatasetError> {
        let mut episode_starts = Vec::new();
        let mut episode_ends = Vec::new();
        let mut transition_rows = Vec::new();
        let mut member_rows = Vec::new();
        for (e, (&start, &end)) in self
            .episode_starts
            .iter()
            .zip(&self.episode_ends)
            .enumerate()
        {
            if keep(e) {
                episode_starts.push(start);
                episode_ends.push(end);
                transition_rows.extend(start..end);
                member_rows.extend(start..=end);
            }
        }
        if member_rows.is_empty() {
            return Err(DatasetError::Empty);
        }
        let member_rows = (member_rows.len() != self.storage_rows()).then_some(member_rows);
        Ok(Dataset {
            obs: self.obs.clone(),
            actions: Arc::clone(&self.actions),
            action_dim: self.action_dim,
            episode_starts,
            episode_ends,
            row_episode_end: Arc::clone(&self.row_episode_end),
            transition_rows,
            member_rows,
        })
    }

    pub fn num_episodes(&self) -> usize {
        self.episode_ends.len()
    }

    /// First row of each episode.
    pub fn episode_starts(&self) -> &[u32] {
        &self.episode_starts
    }

    /// Last row (inclusive) of each episode: the row with no next observation.
    pub fn episode_ends(&self) -> &[u32] {
        &self.episode_ends
    }

    /// For every row, the last row of its episode.
    pub fn row_episode_ends(&self) -> &[u32] {
        &self.row_episode_end
    }

    /// Rows that have a next observation, ascending: the population transitions are drawn from.
    pub fn transition_rows(&self) -> &[u32] {
        &self.transition_rows
    }

    /// Counts and dimensions.
    pub fn summary(&self) -> DataSummary {
        let lengths = self
            .episode_starts
            .iter()
            .zip(&self.episode_ends)
            .map(|(&start, &end)| (end - start + 1) as usize);
        DataSummary {
            rows: self.len(),
            episodes: self.num_episodes(),
            transitions: self.transition_rows.len(),
            obs_kind: self.obs.kind(),
            obs_shape: self.obs.row_shape(),
            action_dim: self.action_dim,
            min_episode_len: lengths.clone().min().unwrap_or(0),
            max_episode_len: lengths.max().unwrap_or(0),
        }
    }
}

/// Checks shapes and returns the common row count.
fn check_row_counts(
    obs: &Obs,
    actions: &[f32],
    action_dim: usize,
    terminal_rows: usize,
) -> Result<usize, DatasetError> {
    let shape = obs.row_shape();
    if shape.contains(&0) {
        return Err(DatasetError::ZeroObsDim { shape });
    }
    if action_dim == 0 {
        return Err(DatasetError::ZeroActionDim);
    }
    let row_len = obs.row_len();
    if !obs.data_len().is_multiple_of(row_len) {
        return Err(DatasetError::RaggedObservations {
            len: obs.data_len(),
            row_len,
            shape,
        });
    }
    if !actions.len().is_multiple_of(action_dim) {
        return Err(DatasetError::RaggedActions {
            len: actions.len(),
            action_dim,
        });
    }
    let obs_rows = obs.data_len() / row_len;
    let action_rows = actions.len() / action_dim;
    if obs_rows != action_rows || obs_rows != terminal_rows {
        return Err(DatasetError::LengthMismatch {
            obs_rows,
            action_rows,
            terminal_rows,
        });
    }
    if obs_rows == 0 {
        return Err(DatasetError::Empty);
    }
    // Indices up to `rows` (one past the end) must fit in u32.
    if u32::try_from(obs_rows).is_err() {
        return Err(DatasetError::TooManyRows { rows: obs_rows });
    }
    Ok(obs_rows)
}

/// Row index as u32; callers have checked that every row index fits.
fn index_u32(row: usize) -> u32 {
    u32::try_from(row).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rows: usize, dim: usize) -> Obs {
        Obs::State {
            data: (0..rows * dim).map(|v| v as f32).collect(),
            dim,
        }
    }

    #[test]
    fn episodes_follow_terminals() {
        let terminals = [false, false, true, true, false, true];
        let ds = Dataset::new(state(6, 2), vec![0.0; 6], 1, &terminals).unwrap();
        assert_eq!(ds.episode_starts(), &[0, 3, 4]);
        assert_eq!(ds.episode_ends(), &[2, 3, 5]);
        assert_eq!(ds.row_episode_ends(), &[2, 2, 2, 3, 5, 5]);
        assert_eq!(ds.transition_rows(), &[0, 1, 4]);
        let summary = ds.summary();
        assert_eq!(summary.rows, 6);
        assert_eq!(summary.episodes, 3);
        assert_eq!(summary.transitions, 3);
        assert_eq!(summary.min_episode_len, 1);
        assert_eq!(summary.max_episode_len, 3);
        assert_eq!(summary.obs_shape, vec![2]);
    }

    #[test]
    fn episode_lengths_match_terminals() {
        let a = Dataset::from_episode_lengths(state(6, 1), vec![0.0; 6], 1, &[3, 1, 2]).unwrap();
        let b = Dataset::new(
            state(6, 1),
            vec![0.0; 6],
            1,
            &[false, false, true, true, false, true],
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_unterminated_final_episode() {
        let err = Dataset::new(state(3, 1), vec![0.0; 3], 1, &[true, false, false]).unwrap_err();
        assert_eq!(err, DatasetError::UnterminatedEpisode { last_row: 2 });
        assert!(err.to_string().contains("terminals[2]"));
    }

    #[test]
    fn rejects_length_mismatch_and_ragged_data() {
        let err = Dataset::new(state(3, 1), vec![0.0; 4], 1, &[false, false, true]).unwrap_err();
        assert!(matches!(
            err,
            DatasetError::LengthMismatch {
                obs_rows: 3,
                action_rows: 4,
                terminal_rows: 3
            }
        ));
        let ragged = Obs::State {
            data: vec![0.0; 5],
            dim: 2,
        };
        let err = Dataset::new(ragged, vec![0.0; 2], 1, &[false, true]).unwrap_err();
        assert!(matches!(
            err,
            DatasetError::RaggedObservations { len: 5, .. }
        ));
        let err = Dataset::new(state(2, 1), vec![0.0; 3], 2, &[false, true]).unwrap_err();
        assert!(matches!(err, DatasetError::RaggedActions { .. }));
        let err = Dataset::new(state(0, 1), vec![], 1, &[]).unwrap_err();
        assert_eq!(err, DatasetError::Empty);
    }

    #[test]
    fn pixel_summary_reports_hwc() {
        let obs = Obs::Pixels {
            data: vec![0; 2 * 4 * 5 * 3].into(),
            height: 4,
            width: 5,
            channels: 3,
        };
        let ds = Dataset::new(obs, vec![0.0; 4], 2, &[false, true]).unwrap();
        let summary = ds.summary();
        assert_eq!(summary.obs_kind, ObsKind::Pixels);
        assert_eq!(summary.obs_shape, vec![4, 5, 3]);
        assert_eq!(summary.action_dim, 2);
    }

    #[test]
    fn selected_episodes_share_storage_and_stay_inside() {
        let obs = Obs::Pixels {
            data: (0..10 * 2 * 2 * 3).map(|v| v as u8).collect(),
            height: 2,
            width: 2,
            channels: 3,
        };
        let all = Dataset::from_episode_lengths(obs, vec![0.5; 10], 1, &[3, 2, 5]).unwrap();
        let subset = all.select_episodes(|e| e != 1).unwrap();
        assert_eq!(subset.episode_starts(), &[0, 5]);
        assert_eq!(subset.episode_ends(), &[2, 9]);
        assert_eq!(subset.transition_rows(), &[0, 1, 5, 6, 7, 8]);
        assert_eq!((subset.len(), subset.storage_rows()), (8, 10));
        let members: Vec<u32> = (0..subset.len()).map(|i| subset.member_row(i)).collect();
        assert_eq!(members, [0, 1, 2, 5, 6, 7, 8, 9]);
        assert_eq!(subset.summary().episodes, 2);
        assert_eq!(subset.summary().min_episode_len, 3);
        let (Obs::Pixels { data: a, .. }, Obs::Pixels { data: b, .. }) = (all.obs(), subset.obs())
        else {
            panic!("pixels expected")
        };
        assert_eq!(a.as_ptr(), b.as_ptr(), "frames shared, not copied");
        assert_eq!(all.member_row(7), 7);
        let whole = all.select_episodes(|_| true).unwrap();
        assert_eq!(whole, all, "selecting everything is the dataset itself");
        assert_eq!(
            all.select_episodes(|_| false).unwrap_err(),
            DatasetError::Empty
        );
    }

    #[test]
    fn frame_bytes_compare_by_content_and_print_short() {
        let owned = FrameBytes::from(vec![1u8, 2, 3]);
        let shared = FrameBytes::shared(Arc::new(vec![1u8, 2, 3]));
        assert_eq!(owned, shared);
        assert_eq!(owned, vec![1u8, 2, 3]);
        assert_eq!(&owned[1..], &[2, 3]);
        let big: FrameBytes = (0..=255u8).collect();
        let text = format!("{big:?}");
        assert!(text.contains("256 bytes") && text.len() < 200, "{text}");
    }
}
