//! The raw BridgeData layout: one directory per trajectory, as the Bridge collection stack (and
//! our own recorder) writes it.
//!
//! ```text
//! <task>/<NN>/<YYYY-MM-DD_HH-MM-SS>/raw/traj_group<k>/traj<i>/
//!     images0/im_0.jpg .. im_T.jpg   (640x480; images1.. for other cameras)
//!     obs_dict.pkl                   dict of arrays of length T+1: full_state (7), state (7, 5 or 4),
//!                                    qpos, qvel, joint_effort (6), eef_transform (4x4), time_stamp
//!     policy_out.pkl                 list of T dicts, each with 'actions' (7, 5 or 4), or of T arrays;
//!                                    ours add 'step_kind' ("policy", "teleop", "jog" or "paused")
//!     agent_data.pkl                 dict with 'traj_ok' (the episode ran to its end); ours add
//!                                    'end_reason', and write it last, when the episode closes
//!     lang.txt                       the instruction (first line), optionally "confidence: ..."
//! ```
//!
//! [`read_trajectory`] reads one such directory (pickles decoded by [`crate::pickle`], no
//! Python); [`RawEpisodeWriter`] writes one, pickles numpy-compatible, so that Bridge's own
//! Python tooling reads our recordings.
//!
//! ```no_run
//! use bridge_data::raw::{self, RawOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! for dir in raw::find_trajectories("bridge_raw".as_ref())? {
//!     let trajectory = raw::read_trajectory(&dir, &RawOptions::default())?;
//!     println!("{}: {} steps", dir.display(), trajectory.actions.len());
//! }
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pickle::{self, NdArray, PickleError, Value, WriteError};
use crate::sources::{self, LagSource};
use crate::trajectory::{BRIDGE_DIM, Outcome, StepKind, StoredFrame, Trajectory};

pub use crate::sources::ReadOptions as RawOptions;

/// The pickle of observations in a trajectory directory.
pub const OBS_DICT_FILE: &str = "obs_dict.pkl";
/// The pickle of actions in a trajectory directory.
pub const POLICY_OUT_FILE: &str = "policy_out.pkl";
/// The end record of a trajectory directory (widowx_envs writes `traj_ok` in it).
pub const AGENT_DATA_FILE: &str = "agent_data.pkl";
/// The language annotation in a trajectory directory.
pub const LANGUAGE_FILE: &str = "lang.txt";

/// Why a raw trajectory could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: pickle {source}", path.display())]
    Pickle { path: PathBuf, source: PickleError },
    #[error("{}: cannot pickle {what}: {source}", path.display())]
    PickleWrite {
        path: PathBuf,
        what: &'static str,
        source: WriteError,
    },
    #[error("{}: field {field}: {problem}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error(
        "{}: no transition left ({observations} observations, {actions} actions after alignment)",
        path.display()
    )]
    TooShort {
        path: PathBuf,
        observations: usize,
        actions: usize,
    },
    /// A file with bad content (e.g. a truncated JPEG), or a writer misuse.
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RawError + '_ {
    move |source| RawError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn field_error(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> RawError {
    RawError::Field {
        path: path.to_path_buf(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// One observation as the Bridge collection stack records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStep {
    /// The `images0` frame, JPEG bytes (640x480 for the real camera and the simulator).
    pub jpeg: Vec<u8>,
    /// Bridge state `[x, y, z, roll, pitch, yaw, gripper]`.
    pub state: [f64; 7],
    pub qpos: [f64; 6],
    pub qvel: [f64; 6],
    pub joint_effort: [f64; 6],
    /// End-effector pose in the base frame, row-major 4x4.
    pub eef_transform: [[f64; 4]; 4],
    pub time_stamp_s: f64,
}

/// The non-image part of a recorded observation (images go to disk at once).
#[derive(Debug, Clone)]
struct RecordedObservation {
    state: [f64; 7],
    qpos: [f64; 6],
    qvel: [f64; 6],
    joint_effort: [f64; 6],
    eef_transform: [[f64; 4]; 4],
    time_stamp_s: f64,
}

/// Writes one trajectory directory in the raw layout, step by step.
///
/// Frames are written as they arrive; the pickles are rewritten by [`RawEpisodeWriter::flush`]
/// (temporary file, then rename), so after a crash the directory loads with the steps of the last
/// flush. Dropping the writer does not flush (a crash would not either); call
/// [`RawEpisodeWriter::finish`].
#[derive(Debug)]
pub struct RawEpisodeWriter {
    dir: PathBuf,
    observations: Vec<RecordedObservation>,
    actions: Vec<([f64; 7], StepKind)>,
}

impl RawEpisodeWriter {
    /// Creates `dir` (traj directory) with images0/, writes lang.txt when given. Refuses a
    /// directory that already holds a recording (an `obs_dict.pkl`).
    pub fn create(dir: &Path, language: Option<&str>) -> Result<Self, RawError> {
        let images = dir.join("images0");
        fs::create_dir_all(&images).map_err(io_error(&images))?;
        let obs_dict = dir.join(OBS_DICT_FILE);
        if obs_dict.exists() {
            return Err(RawError::Invalid {
                path: obs_dict,
                problem: "already exists; refusing to overwrite a recording".into(),
            });
        }
        if let Some(text) = language {
            write_atomically(&dir.join(LANGUAGE_FILE), format!("{text}\n").as_bytes())?;
        }
        Ok(RawEpisodeWriter {
            dir: dir.to_path_buf(),
            observations: Vec::new(),
            actions: Vec::new(),
        })
    }

    /// The trajectory directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Observations recorded so far.
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    /// Actions recorded so far.
    pub fn action_count(&self) -> usize {
        self.actions.len()
    }

    /// Writes images0/im_{t}.jpg at once (t = observations so far).
    pub fn push_observation(&mut self, step: &RawStep) -> Result<(), RawError> {
        let t = self.observations.len();
        let image = self.dir.join("images0").join(format!("im_{t}.jpg"));
        write_atomically(&image, &step.jpeg)?;
        self.observations.push(RecordedObservation {
            state: step.state,
            qpos: step.qpos,
            qvel: step.qvel,
            joint_effort: step.joint_effort,
            eef_transform: step.eef_transform,
            time_stamp_s: step.time_stamp_s,
        });
        Ok(())
    }

    /// Records the action taken in the latest observation
    /// (`[dx, dy, dz, droll, dpitch, dyaw, gripper]`), as a policy step. At most one action per
    /// observation.
    pub fn push_action(&mut self, action: [f64; 7]) -> Result<(), RawError> {
        self.push_action_of(action, StepKind::Policy)
    }

    /// [`RawEpisodeWriter::push_action`] for an action of `kind` (a teleoperated step).
    pub fn push_action_of(&mut self, action: [f64; 7], kind: StepKind) -> Result<(), RawError> {
        if self.actions.len() >= self.observations.len() {
            return Err(RawError::Invalid {
                path: self.dir.clone(),
                problem: format!(
                    "action {} pushed without a new observation ({} observations so far)",
                    self.actions.len(),
                    self.observations.len()
                ),
            });
        }
        self.actions.push((action, kind));
        Ok(())
    }

    /// Flags the latest action's step as `kind` (the operator jogged or paused during it).
    pub fn mark_last_action(&mut self, kind: StepKind) -> Result<(), RawError> {
        match self.actions.last_mut() {
            Some((_, last)) => {
                *last = kind;
                Ok(())
            }
            None => Err(RawError::Invalid {
                path: self.dir.clone(),
                problem: format!("step flagged {} before any action", kind.as_str()),
            }),
        }
    }

    /// Rewrites obs_dict.pkl and policy_out.pkl with everything so far, atomically (tmp + rename),
    /// so that after a crash the directory loads with the steps flushed.
    pub fn flush(&mut self) -> Result<(), RawError> {
        let policy_out = self.dir.join(POLICY_OUT_FILE);
        let bytes = pickle::to_vec(&policy_out_value(&self.actions)).map_err(|source| {
            RawError::PickleWrite {
                path: policy_out.clone(),
                what: "actions",
                source,
            }
        })?;
        write_atomically(&policy_out, &bytes)?;
        let obs_dict = self.dir.join(OBS_DICT_FILE);
        let bytes = pickle::to_vec(&obs_dict_value(&self.observations)).map_err(|source| {
            RawError::PickleWrite {
                path: obs_dict.clone(),
                what: "observations",
                source,
            }
        })?;
        write_atomically(&obs_dict, &bytes)
    }

    /// Flushes, then writes the end record (`agent_data.pkl`, last: a directory without it
    /// was never closed) and returns the directory.
    pub fn finish(mut self, outcome: &Outcome) -> Result<PathBuf, RawError> {
        self.flush()?;
        let path = self.dir.join(AGENT_DATA_FILE);
        let bytes =
            pickle::to_vec(&agent_data_value(outcome)).map_err(|source| RawError::PickleWrite {
                path: path.clone(),
                what: "the end record",
                source,
            })?;
        write_atomically(&path, &bytes)?;
        Ok(self.dir)
    }
}

/// Writes `path` through a temporary sibling and a rename, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RawError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_data().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path))
}

fn matrix_value(rows: usize, width: usize, values: impl Iterator<Item = f64>) -> Value {
    let values: Vec<f64> = values.collect();
    Value::Array(NdArray::from_f64(vec![rows, width], &values))
}

fn obs_dict_value(observations: &[RecordedObservation]) -> Value {
    let n = observations.len();
    let state = || matrix_value(n, 7, observations.iter().flat_map(|o| o.state));
    let six = |pick: fn(&RecordedObservation) -> [f64; 6]| {
        matrix_value(n, 6, observations.iter().flat_map(pick))
    };
    let eef: Vec<f64> = observations
        .iter()
        .flat_map(|o| o.eef_transform.into_iter().flatten())
        .collect();
    let time: Vec<f64> = observations.iter().map(|o| o.time_stamp_s).collect();
    let entry = |key: &str, value: Value| (Value::Str(key.into()), value);
    Value::Dict(vec![
        entry("state", state()),
        entry("full_state", state()),
        entry("qpos", six(|o| o.qpos)),
        entry("qvel", six(|o| o.qvel)),
        entry("joint_effort", six(|o| o.joint_effort)),
        entry(
            "eef_transform",
            Value::Array(NdArray::from_f64(vec![n, 4, 4], &eef)),
        ),
        entry(
            "time_stamp",
            Value::Array(NdArray::from_f64(vec![n], &time)),
        ),
    ])
}

fn policy_out_value(actions: &[([f64; 7], StepKind)]) -> Value {
    Value::List(
        actions
            .iter()
            .map(|(action, kind)| {
                Value::Dict(vec![
                    (
                        Value::Str("actions".into()),
                        Value::Array(NdArray::from_f64(vec![7], action)),
                    ),
                    (
                        Value::Str("step_kind".into()),
                        Value::Str(kind.as_str().into()),
                    ),
                ])
            })
            .collect(),
    )
}

fn agent_data_value(outcome: &Outcome) -> Value {
    let (traj_ok, reason) = match outcome {
        Outcome::Completed => (true, "completed"),
        Outcome::Aborted { reason } => (false, reason.as_str()),
    };
    Value::Dict(vec![
        (Value::Str("traj_ok".into()), Value::Bool(traj_ok)),
        (Value::Str("end_reason".into()), Value::Str(reason.into())),
    ])
}

/// Reads one raw trajectory directory (the reader tolerates T+1 or T observations for T actions,
/// trimming to a consistent episode; the pre-2021-07-23 lag per RawOptions).
///
/// Alignment: with `N` states and `A` actions, the episode keeps `min(N, A + 1)` observations and
/// one action fewer. Frames beyond that (written before a crash interrupted a flush) are ignored.
pub fn read_trajectory(dir: &Path, options: &RawOptions) -> Result<Trajectory, RawError> {
    let states = read_states(&dir.join(OBS_DICT_FILE))?;
    let (actions, mut step_kinds) = read_actions(&dir.join(POLICY_OUT_FILE))?;
    let outcome = read_outcome(dir)?;
    let observation_count = states.len().min(actions.len() + 1);
    let camera_dir = dir.join(format!("images{}", options.camera));
    let frames = (0..observation_count)
        .map(|t| {
            let path = camera_dir.join(format!("im_{t}.jpg"));
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            sources::check_jpeg(&bytes).map_err(|problem| RawError::Invalid {
                path: path.clone(),
                problem,
            })?;
            Ok(StoredFrame::Jpeg(bytes))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trajectory = Trajectory {
        source: dir.to_path_buf(),
        frames,
        states: states[..observation_count].to_vec(),
        actions: actions[..observation_count.saturating_sub(1)].to_vec(),
        language: read_language(&dir.join(LANGUAGE_FILE))?,
        step_kinds: {
            step_kinds.truncate(observation_count.saturating_sub(1));
            step_kinds
        },
        outcome,
    };
    let lag = LagSource::DatedPath(dir);
    let trajectory = sources::apply_options(trajectory, options, lag);
    if trajectory.actions.is_empty() {
        return Err(RawError::TooShort {
            path: dir.to_path_buf(),
            observations: trajectory.frames.len(),
            actions: trajectory.actions.len(),
        });
    }
    Ok(trajectory)
}

fn read_pickle(path: &Path) -> Result<Value, RawError> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    pickle::from_slice(&bytes).map_err(|source| RawError::Pickle {
        path: path.to_path_buf(),
        source,
    })
}

/// The 7-d poses `[x, y, z, roll, pitch, yaw, gripper]`, float64 or float32, shape (N, 7).
///
/// `full_state` first, as Bridge's own processing (bridgedata_raw_to_numpy, the jaxrl_m loaders)
/// reads it: widowx_envs writes it in every action mode, while its `state` is the full pose only
/// in `3trans3rot` ([x, y, z, gripper] in `3trans`, [x, y, z, yaw, gripper] in `3trans1rot`).
/// `state` is read only when `full_state` is absent and `state` is 7-d.
fn read_states(path: &Path) -> Result<Vec<[f32; BRIDGE_DIM]>, RawError> {
    let root = read_pickle(path)?;
    if !matches!(root, Value::Dict(_)) {
        return Err(field_error(
            path,
            "(root)",
            format!("expected a dict, found {}", root.type_name()),
        ));
    }
    let (field, value) = match (root.get("full_state"), root.get("state")) {
        (Some(full), _) => ("full_state", full),
        (None, Some(state)) => ("state", state),
        (None, None) => {
            return Err(field_error(
                path,
                "full_state",
                "missing (and no `state` either)",
            ));
        }
    };
    let array = value.as_array().ok_or_else(|| {
        field_error(
            path,
            field,
            format!("expected an ndarray, found {}", value.type_name()),
        )
    })?;
    rows_of_seven(array).map_err(|problem| {
        let hint = if field == "state" {
            " (a 3trans or 3trans1rot recording keeps the 7-d pose only in `full_state`, which is missing)"
        } else {
            ""
        };
        field_error(path, field, format!("{problem}{hint}"))
    })
}

/// `policy_out[i]['actions']` (or `policy_out[i]` itself, a plain array, which Bridge's
/// processing also accepts) for every i, as 7-d Bridge actions. widowx_envs records the action
/// of its mode: 5-d `[dx, dy, dz, dyaw, grip]` in `3trans1rot` and 4-d `[dx, dy, dz, grip]` in
/// `3trans`; these are widened the way its `step()` widens them before executing, with zero
/// roll and pitch (and yaw).
///
/// Also the steps' `step_kind` flags, all or none (empty when the recording has none).
fn read_actions(path: &Path) -> Result<(Vec<[f32; BRIDGE_DIM]>, Vec<StepKind>), RawError> {
    let root = read_pickle(path)?;
    let steps = root.as_sequence().ok_or_else(|| {
        field_error(
            path,
            "(root)",
            format!("expected a list, found {}", root.type_name()),
        )
    })?;
    let actions = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (field, array) = match step.get("actions") {
                Some(actions) => (format!("[{i}]['actions']"), actions.as_array()),
                None => (format!("[{i}]"), step.as_array()),
            };
            let array = array
                .ok_or_else(|| field_error(path, field.clone(), "missing or not an ndarray"))?;
            widened_action(array).map_err(|problem| field_error(path, field, problem))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let flagged = steps
        .iter()
        .filter(|s| s.get("step_kind").is_some())
        .count();
    if flagged == 0 {
        return Ok((actions, Vec::new()));
    }
    let kinds = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let field = format!("[{i}]['step_kind']");
            let text = step
                .get("step_kind")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    field_error(
                        path,
                        &field,
                        format!(
                            "missing or not a string ({flagged} of {} steps are flagged)",
                            steps.len()
                        ),
                    )
                })?;
            StepKind::parse(text).ok_or_else(|| {
                field_error(
                    path,
                    &field,
                    format!("{text:?}; expected \"policy\", \"jog\" or \"paused\""),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((actions, kinds))
}

/// How the episode ended, from `agent_data.pkl` (`traj_ok`, and our `end_reason`). Without the
/// file: aborted when our own tools recorded the session (they always close an episode with it,
/// so the process was killed), unknown otherwise (Bridge's converter does not need it either).
fn read_outcome(dir: &Path) -> Result<Option<Outcome>, RawError> {
    let path = dir.join(AGENT_DATA_FILE);
    let ours = crate::provenance::marker_of(dir).is_some();
    if !path.is_file() {
        return Ok(ours.then(|| Outcome::Aborted {
            reason: format!(
                "no end record ({AGENT_DATA_FILE}): the recording never closed (the process was killed or crashed)"
            ),
        }));
    }
    let root = match read_pickle(&path) {
        Ok(root) => root,
        Err(e) if ours => return Err(e),
        // Another stack's agent data may hold objects we need not understand.
        Err(_) => return Ok(None),
    };
    let traj_ok = match root.get("traj_ok") {
        Some(Value::Bool(ok)) => *ok,
        Some(Value::Int(v)) => *v != 0,
        Some(other) => {
            return Err(field_error(
                &path,
                "traj_ok",
                format!("expected a bool, found {}", other.type_name()),
            ));
        }
        None if ours => return Err(field_error(&path, "traj_ok", "missing")),
        None => return Ok(None),
    };
    Ok(Some(if traj_ok {
        Outcome::Completed
    } else {
        let reason = root
            .get("end_reason")
            .and_then(Value::as_str)
            .unwrap_or("traj_ok is False");
        Outcome::Aborted {
            reason: reason.to_string(),
        }
    }))
}

/// One recorded action of any widowx_envs action mode as a 7-d Bridge action.
fn widened_action(array: &NdArray) -> Result<[f32; BRIDGE_DIM], String> {
    let values = match array.shape.as_slice() {
        [7 | 5 | 4] | [1, 7 | 5 | 4] => array.to_f64_vec().map_err(|e| e.to_string())?,
        shape => {
            return Err(format!(
                "expected shape (7,) (3trans3rot), (5,) (3trans1rot) or (4,) (3trans), found {shape:?}"
            ));
        }
    };
    let widened: [f64; BRIDGE_DIM] = match values.as_slice() {
        &[x, y, z, roll, pitch, yaw, grip] => [x, y, z, roll, pitch, yaw, grip],
        &[x, y, z, yaw, grip] => [x, y, z, 0.0, 0.0, yaw, grip],
        &[x, y, z, grip] => [x, y, z, 0.0, 0.0, 0.0, grip],
        other => {
            return Err(format!(
                "{} values for shape {:?}",
                other.len(),
                array.shape
            ));
        }
    };
    Ok(widened.map(|v| v as f32))
}

/// An array of shape (7,) or (N, 7) as rows of f32.
pub(crate) fn rows_of_seven(array: &NdArray) -> Result<Vec<[f32; BRIDGE_DIM]>, String> {
    let shape_ok = matches!(array.shape.as_slice(), [BRIDGE_DIM] | [_, BRIDGE_DIM]);
    if !shape_ok {
        return Err(format!(
            "expected shape (N, {BRIDGE_DIM}) or ({BRIDGE_DIM},), found {:?}",
            array.shape
        ));
    }
    let values = array.to_f64_vec().map_err(|e| e.to_string())?;
    Ok(values
        .chunks_exact(BRIDGE_DIM)
        .map(|row| std::array::from_fn(|i| row[i] as f32))
        .collect())
}

/// The instruction: the first non-empty line that is not a `confidence:` annotation.
fn read_language(path: &Path) -> Result<Option<String>, RawError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path)(source)),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("confidence"))
        .map(str::to_string))
}

/// Every trajectory directory under `root` (any depth; a dir holding obs_dict.pkl), sorted.
pub fn find_trajectories(root: &Path) -> Result<Vec<PathBuf>, RawError> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if dir.join(OBS_DICT_FILE).is_file() {
            found.push(dir);
            continue;
        }
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
