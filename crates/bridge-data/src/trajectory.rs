//! One robot episode in Bridge conventions, independent of the file format it came from.
//!
//! Every reader ([`crate::raw`], [`crate::tfrecord`], [`crate::npy_release`]) yields
//! [`Trajectory`] values; `bridge-train prepare` turns them into the training cache.

use std::ops::Range;
use std::path::PathBuf;

/// Length of the Bridge state and action vectors: `[x, y, z, roll, pitch, yaw, gripper]`.
pub const BRIDGE_DIM: usize = 7;

/// One camera frame as stored by its source: still encoded (raw layout, TFRecord) or already
/// decoded (the NumPy release stores RGB arrays).
#[derive(Debug, Clone, PartialEq)]
pub enum StoredFrame {
    /// A JPEG file's bytes.
    Jpeg(Vec<u8>),
    /// Decoded RGB, `height_px * width_px * 3` bytes, row-major HWC.
    Rgb {
        width_px: u32,
        height_px: u32,
        data: Vec<u8>,
    },
}

/// One episode: `T + 1` observations (frame and state) and `T` actions, `actions[t]` taken in
/// observation `t` and leading to observation `t + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// Where it came from: a trajectory directory, or `shard.tfrecord#<record index>`, or
    /// `out.npy#<list index>`; used in every error and in the cache manifest.
    pub source: PathBuf,
    /// Frames of the chosen camera, one per observation.
    pub frames: Vec<StoredFrame>,
    /// Bridge states, one per observation.
    pub states: Vec<[f32; BRIDGE_DIM]>,
    /// Bridge actions, one per transition (`frames.len() - 1` of them).
    pub actions: Vec<[f32; BRIDGE_DIM]>,
    /// The language annotation, when the episode has one.
    pub language: Option<String>,
    /// Who moved the arm in each step (one per action); empty when the source does not say
    /// (every format but our own raw recordings).
    pub step_kinds: Vec<StepKind>,
    /// How the episode ended; `None` when the source does not say.
    pub outcome: Option<Outcome>,
}

/// Who moved the arm between an observation and the next, as a recording flags it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Only the recorded action, chosen by a policy (or replayed).
    Policy,
    /// Only the recorded action, commanded by the operator teleoperating the arm: a
    /// demonstration, not an intervention.
    Teleop,
    /// The operator jogged the arm or worked the gripper during the step.
    Jog,
    /// The operator paused the episode during the step (the arm held; time passed).
    Paused,
}

impl StepKind {
    /// The name recorded in `policy_out.pkl` (`step_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Policy => "policy",
            StepKind::Teleop => "teleop",
            StepKind::Jog => "jog",
            StepKind::Paused => "paused",
        }
    }

    /// The kind named `text`, as [`StepKind::as_str`] writes it.
    pub fn parse(text: &str) -> Option<StepKind> {
        [
            StepKind::Policy,
            StepKind::Teleop,
            StepKind::Jog,
            StepKind::Paused,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    /// Whether the operator acted during the step: the action alone does not explain the
    /// transition.
    pub fn intervened(self) -> bool {
        matches!(self, StepKind::Jog | StepKind::Paused)
    }
}

/// How a recorded episode ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every requested step was taken.
    Completed,
    /// It stopped early (operator, safety fault, a killed process), for `reason`.
    Aborted { reason: String },
}

impl Outcome {
    /// Aborted for `reason`.
    pub fn aborted(reason: impl Into<String>) -> Outcome {
        Outcome::Aborted {
            reason: reason.into(),
        }
    }
}

impl Trajectory {
    /// Number of observations (`T + 1`).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the trajectory holds no observation.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Steps in which the operator acted ([`StepKind::intervened`]).
    pub fn intervened_steps(&self) -> usize {
        self.step_kinds.iter().filter(|k| k.intervened()).count()
    }

    /// The runs of consecutive policy-only steps, as ranges of action indices (all of them when
    /// the source does not flag steps).
    pub fn policy_runs(&self) -> Vec<Range<usize>> {
        if self.step_kinds.is_empty() {
            return std::iter::once(0..self.actions.len()).collect();
        }
        let mut runs = Vec::new();
        let mut start = 0;
        for (t, kind) in self.step_kinds.iter().enumerate() {
            if kind.intervened() {
                if t > start {
                    runs.push(start..t);
                }
                start = t + 1;
            }
        }
        if self.actions.len() > start {
            runs.push(start..self.actions.len());
        }
        runs
    }

    /// The part with the actions `actions` and the observations around them.
    pub fn segment(&self, actions: Range<usize>) -> Trajectory {
        let observations = actions.start..actions.end + 1;
        Trajectory {
            source: self.source.clone(),
            frames: self.frames[observations.clone()].to_vec(),
            states: self.states[observations].to_vec(),
            actions: self.actions[actions.clone()].to_vec(),
            language: self.language.clone(),
            step_kinds: self
                .step_kinds
                .get(actions)
                .map_or_else(Vec::new, <[StepKind]>::to_vec),
            outcome: self.outcome.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(kinds: &[StepKind]) -> Trajectory {
        let n = kinds.len();
        Trajectory {
            source: "t".into(),
            frames: (0..=n).map(|i| StoredFrame::Jpeg(vec![i as u8])).collect(),
            states: (0..=n).map(|i| [i as f32; BRIDGE_DIM]).collect(),
            actions: (0..n).map(|i| [i as f32; BRIDGE_DIM]).collect(),
            language: None,
            step_kinds: kinds.to_vec(),
            outcome: None,
        }
    }

    #[test]
    fn intervened_steps_split_the_policy_runs() {
        use StepKind::*;
        let t = flagged(&[Policy, Policy, Jog, Policy, Paused, Paused, Policy, Policy]);
        assert_eq!(t.intervened_steps(), 3);
        assert_eq!(t.policy_runs(), vec![0..2, 3..4, 6..8]);
        let last = t.segment(6..8);
        assert_eq!(last.actions, vec![[6.0; 7], [7.0; 7]]);
        assert_eq!(last.states, vec![[6.0; 7], [7.0; 7], [8.0; 7]]);
        assert_eq!(last.frames.len(), 3);
        assert_eq!(last.step_kinds, vec![Policy, Policy]);
        let unflagged = Trajectory {
            step_kinds: Vec::new(),
            ..t
        };
        assert_eq!(
            unflagged.policy_runs(),
            std::iter::once(0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn step_kinds_round_trip_their_names() {
        for kind in [
            StepKind::Policy,
            StepKind::Teleop,
            StepKind::Jog,
            StepKind::Paused,
        ] {
            assert_eq!(StepKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(StepKind::parse("operator"), None);
        assert!(!StepKind::Teleop.intervened());
    }
}
