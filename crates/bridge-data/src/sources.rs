//! Where trajectories come from, and the options every reader shares.
//!
//! [`ReadOptions`] is applied the same way by the raw, TFRecord and NumPy-release readers:
//! camera choice, the pre-2021-07-23 camera lag, recomputing xyz/rpy actions from states, and
//! gripper binarisation (in that order).
//!
//! [`discover`] finds every source under a path; [`Source::read`] dispatches to its reader.
//!
//! ```no_run
//! use bridge_data::sources::{self, ReadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ReadOptions { binarize_gripper: true, ..ReadOptions::default() };
//! for source in sources::discover("data".as_ref())? {
//!     match source.read(&options) {
//!         Ok(trajectories) => println!("{}: {}", source.path().display(), trajectories.len()),
//!         Err(error) => eprintln!("skipped: {error}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use widowx::bridge::CommandedPose;

use crate::npy_release::{self, NpyReleaseError};
use crate::raw::{self, OBS_DICT_FILE, RawError};
use crate::tfrecord::{self, TfRecordError};
use crate::trajectory::{BRIDGE_DIM, Trajectory};

/// One readable unit of Bridge data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A raw trajectory directory (holding `obs_dict.pkl`).
    RawTrajectory(PathBuf),
    /// An RLDS TFRecord shard (a file whose name contains `.tfrecord`).
    TfRecordShard(PathBuf),
    /// A NumPy release file (`*.npy`, e.g. `train/out.npy`).
    NumpyRelease(PathBuf),
}

/// Why a source could not be found or read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error(transparent)]
    TfRecord(#[from] TfRecordError),
    #[error(transparent)]
    NumpyRelease(#[from] NpyReleaseError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a Bridge source (expected a trajectory directory with obs_dict.pkl, a *.tfrecord* shard or a *.npy file)",
        path.display()
    )]
    Unrecognised { path: PathBuf },
}

impl Source {
    /// The directory or file.
    pub fn path(&self) -> &Path {
        match self {
            Source::RawTrajectory(path)
            | Source::TfRecordShard(path)
            | Source::NumpyRelease(path) => path,
        }
    }

    /// Classifies one path: a trajectory directory or a shard / release file.
    pub fn from_path(path: &Path) -> Option<Source> {
        if path.is_dir() {
            return path
                .join(OBS_DICT_FILE)
                .is_file()
                .then(|| Source::RawTrajectory(path.to_path_buf()));
        }
        let name = path.file_name()?.to_string_lossy();
        if name.contains(".tfrecord") {
            Some(Source::TfRecordShard(path.to_path_buf()))
        } else if name.ends_with(".npy") {
            Some(Source::NumpyRelease(path.to_path_buf()))
        } else {
            None
        }
    }

    /// Reads every trajectory of this source.
    pub fn read(&self, options: &ReadOptions) -> Result<Vec<Trajectory>, SourceError> {
        Ok(match self {
            Source::RawTrajectory(dir) => vec![raw::read_trajectory(dir, options)?],
            Source::TfRecordShard(path) => tfrecord::read_shard(path, options)?,
            Source::NumpyRelease(path) => npy_release::read(path, options)?,
        })
    }
}

/// Every source at or under `path` (any depth), sorted by path. A trajectory directory is not
/// searched further (its image folders hold no sources). A path that is itself a file must be a
/// shard or an `.npy`.
pub fn discover(path: &Path) -> Result<Vec<Source>, SourceError> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(SourceError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        return Source::from_path(path)
            .map(|source| vec![source])
            .ok_or_else(|| SourceError::Unrecognised {
                path: path.to_path_buf(),
            });
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if let Some(source) = Source::from_path(&dir) {
            found.push(source);
            continue;
        }
        let io_error = |source| SourceError::Io {
            path: dir.clone(),
            source,
        };
        for entry in fs::read_dir(&dir).map_err(io_error)? {
            let entry_path = entry.map_err(io_error)?.path();
            if entry_path.is_dir() {
                pending.push(entry_path);
            } else if let Some(source) = Source::from_path(&entry_path) {
                found.push(source);
            }
        }
    }
    found.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(found)
}

/// Whether to correct the one-step camera lag of Bridge data recorded before 2021-07-23
/// (drop the first observation and the last action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CameraLag {
    /// Raw trajectories: correct when a `YYYY-MM-DD_HH-MM-SS` directory in the path is before
    /// 2021-07-23. TFRecord and NumPy releases: never (they were already corrected upstream).
    #[default]
    Auto,
    /// Always correct.
    Correct,
    /// Never correct.
    Keep,
}

/// How to recompute the xyz/rpy part of the actions from consecutive states (the gripper
/// component always stays the recorded one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActionRecompute {
    /// Keep the recorded actions.
    #[default]
    Off,
    /// `state[t+1] - state[t]` for xyz and rpy, rpy wrapped to (-pi, pi]. This is Octo's
    /// `relabel_bridge_actions` (which does not wrap; the two differ only when an angle crosses
    /// +-pi).
    StateDifference,
    /// xyz difference; rpy of the relative rotation `R(t+1) * R(t)^T` with `R = Rz(yaw) *
    /// Ry(pitch) * Rx(roll)`: the base-frame rotation that, applied as Bridge applies a rotation
    /// action (about base axes through the end effector), turns pose t into pose t+1. Bridge's
    /// rpy are relative to a fixed "gripper down" rotation on the right, which cancels here.
    RelativeRotation,
}

/// Options shared by all readers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    /// Camera index: raw folder `images{camera}`, TFRecord `steps/observation/image_{camera}`.
    /// The NumPy release only has camera 0. Default 0 (`images0`, the fixed camera).
    pub camera: usize,
    /// Map the action gripper to exactly 0 (below 0.5, closed) or 1 (open), as evaluation does.
    pub binarize_gripper: bool,
    pub recompute_actions: ActionRecompute,
    pub camera_lag: CameraLag,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            camera: 0,
            binarize_gripper: false,
            recompute_actions: ActionRecompute::Off,
            camera_lag: CameraLag::Auto,
        }
    }
}

/// What [`CameraLag::Auto`] decides from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LagSource<'a> {
    /// A raw trajectory directory: lagged when its dated collection directory is too old.
    DatedPath(&'a Path),
    /// A release already corrected upstream.
    Corrected,
}

/// The first day without the camera lag.
const LAG_FIXED_ON: (u32, u32, u32) = (2021, 7, 23);

/// True when `path` has a `YYYY-MM-DD_HH-MM-SS` component dated before 2021-07-23 (the
/// component nearest the end wins, as Bridge's own scripts take the collection directory).
pub fn recorded_with_camera_lag(path: &Path) -> bool {
    path.components()
        .rev()
        .find_map(|c| parse_collection_date(&c.as_os_str().to_string_lossy()))
        .is_some_and(|date| date < LAG_FIXED_ON)
}

/// `YYYY-MM-DD_HH-MM-SS` to (year, month, day).
fn parse_collection_date(name: &str) -> Option<(u32, u32, u32)> {
    let bytes = name.as_bytes();
    let shape_ok = bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 | 13 | 16 => b == b'-',
            10 => b == b'_',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| name[range].parse::<u32>().ok();
    let (month, day) = (number(5..7)?, number(8..10)?);
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((number(0..4)?, month, day))
}

/// Checks that `bytes` look like one complete JPEG: the SOI marker at the start and the EOI
/// marker at the end (trailing zero padding allowed). Catches truncated frames without decoding.
pub fn check_jpeg(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return Err(format!(
            "not a JPEG (starts with {:02x?}, expected ff d8 ff)",
            &bytes[..bytes.len().min(3)]
        ));
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if !bytes[..end].ends_with(&[0xff, 0xd9]) {
        return Err(format!(
            "JPEG of {} bytes has no end marker (truncated?)",
            bytes.len()
        ));
    }
    Ok(())
}

/// Applies lag correction, action recomputation and gripper binarisation, in that order.
pub(crate) fn apply_options(
    mut trajectory: Trajectory,
    options: &ReadOptions,
    lag_source: LagSource<'_>,
) -> Trajectory {
    let lagged = match (options.camera_lag, lag_source) {
        (CameraLag::Correct, _) => true,
        (CameraLag::Keep, _) | (CameraLag::Auto, LagSource::Corrected) => false,
        (CameraLag::Auto, LagSource::DatedPath(path)) => recorded_with_camera_lag(path),
    };
    if lagged && !trajectory.frames.is_empty() {
        trajectory.frames.remove(0);
        trajectory.states.remove(0);
        trajectory.actions.pop();
        let actions = trajectory.actions.len();
        trajectory.step_kinds.truncate(actions);
    }
    recompute_actions(&mut trajectory, options.recompute_actions);
    if options.binarize_gripper {
        for action in &mut trajectory.actions {
            action[BRIDGE_DIM - 1] = if action[BRIDGE_DIM - 1] < 0.5 {
                0.0
            } else {
                1.0
            };
        }
    }
    trajectory
}

fn recompute_actions(trajectory: &mut Trajectory, mode: ActionRecompute) {
    if mode == ActionRecompute::Off {
        return;
    }
    for (t, action) in trajectory.actions.iter_mut().enumerate() {
        let (Some(now), Some(next)) = (trajectory.states.get(t), trajectory.states.get(t + 1))
        else {
            continue;
        };
        let motion = state_motion(now, next, mode);
        action[..6].copy_from_slice(&motion);
    }
}

/// The xyz/rpy motion from state `now` to state `next` (f64 arithmetic, f32 result).
pub fn state_motion(
    now: &[f32; BRIDGE_DIM],
    next: &[f32; BRIDGE_DIM],
    mode: ActionRecompute,
) -> [f32; 6] {
    let mut out = [0f32; 6];
    for i in 0..3 {
        out[i] = next[i] - now[i];
    }
    let rpy = |s: &[f32; BRIDGE_DIM]| [f64::from(s[3]), f64::from(s[4]), f64::from(s[5])];
    let delta = match mode {
        ActionRecompute::RelativeRotation => {
            // The rotation part of the Bridge action that turns pose t into pose t+1 (the
            // position part is the plain difference above, computed in f32 as recorded).
            let pose = |s| CommandedPose::from_xyz_rpy([0.0; 3], rpy(s));
            let motion = pose(now).delta_to(&pose(next));
            [motion[3], motion[4], motion[5]]
        }
        _ => {
            let (a, b) = (rpy(now), rpy(next));
            [0, 1, 2].map(|i| wrap_angle_rad(b[i] - a[i]))
        }
    };
    for i in 0..3 {
        out[3 + i] = delta[i] as f32;
    }
    out
}

/// Wraps an angle to (-pi, pi].
fn wrap_angle_rad(angle_rad: f64) -> f64 {
    use std::f64::consts::{PI, TAU};
    let wrapped = (angle_rad + PI).rem_euclid(TAU) - PI;
    if wrapped <= -PI {
        wrapped + TAU
    } else {
        wrapped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::pose::{mat3_mul, rotation_from_rpy, rpy_from_rotation};

    #[test]
    fn collection_dates_decide_the_lag() {
        let old = Path::new("/d/put_x/00/2021-06-01_10-11-12/raw/traj_group0/traj3");
        let new = Path::new("/d/put_x/00/2021-07-23_00-00-00/raw/traj_group0/traj3");
        assert!(recorded_with_camera_lag(old));
        assert!(!recorded_with_camera_lag(new));
        assert!(!recorded_with_camera_lag(Path::new("/d/no_date/traj0")));
        assert!(!recorded_with_camera_lag(Path::new(
            "/d/2021-13-01_00-00-00/t"
        )));
    }

    #[test]
    fn relative_rotation_recovers_a_base_frame_delta() {
        let start = [0.3, -0.2, 0.5];
        let delta = [0.05, -0.1, 0.2];
        let end = mat3_mul(&rotation_from_rpy(delta), &rotation_from_rpy(start));
        let end_rpy = rpy_from_rotation(&end);
        let state = |rpy: [f64; 3]| -> [f32; 7] {
            [
                0.0,
                0.0,
                0.0,
                rpy[0] as f32,
                rpy[1] as f32,
                rpy[2] as f32,
                1.0,
            ]
        };
        let motion = state_motion(
            &state(start),
            &state(end_rpy),
            ActionRecompute::RelativeRotation,
        );
        for i in 0..3 {
            assert!(
                (f64::from(motion[3 + i]) - delta[i]).abs() < 1e-5,
                "{motion:?}"
            );
        }
    }

    #[test]
    fn wrapped_difference_crosses_pi() {
        let a = [0.0, 0.0, 0.0, 3.1, 0.0, 0.0, 1.0];
        let b = [0.0, 0.0, 0.0, -3.1, 0.0, 0.0, 1.0];
        let motion = state_motion(&a, &b, ActionRecompute::StateDifference);
        assert!((f64::from(motion[3]) - (2.0 * std::f64::consts::PI - 6.2)).abs() < 1e-5);
    }
}
