//! Scripted action sources, run as a [`Policy`] so that the supervisor, the step limits and the
//! workspace box apply to them exactly as to a learned policy:
//!
//! - [`ReplayPolicy`]: a recorded episode's actions, step by step; with the states it observed
//!   on the way, [`path_error`] says how far the replayed end-effector path lies from the
//!   recorded one;
//! - [`PoseTarget`]: drives the gripper from the start pose to a position and yaw in Bridge
//!   steps, as BridgeData's `eval_gc` does before it snaps a goal image.
//!
//! Not for: deciding anything from pixels (both ignore the camera).

use std::sync::{Arc, Mutex, PoisonError};

use widowx::bridge::StepLimits;

use crate::policy::{GoalImage, Policy, PolicyError, PolicyOutput};

/// The states a scripted source observed, one per step, shared with the caller.
#[derive(Debug, Clone, Default)]
pub struct ObservedStates(Arc<Mutex<Vec<[f64; 7]>>>);

impl ObservedStates {
    fn push(&self, state: [f64; 7]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(state);
    }

    /// The Bridge states observed so far, one per step taken.
    pub fn take(&self) -> Vec<[f64; 7]> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The model input scripted and teleoperated sources claim (they never look at the pixels).
pub(crate) const SCRIPTED_INPUT_PX: u32 = 8;

/// Replays recorded Bridge actions, one per policy step, and ends the episode after the last.
/// With a recorded start ([`ReplayPolicy::from_start`]) it first drives there in Bridge steps
/// ([`PoseTarget`]): a recording need not start at the runtime's start pose.
pub struct ReplayPolicy {
    actions: Vec<[f32; 7]>,
    next: usize,
    observed: ObservedStates,
    /// The drive to the recorded start, while it lasts.
    lead_in: Option<PoseTarget>,
    start: Option<PoseTarget>,
    /// The state observed for the coming step.
    last_state: [f64; 7],
}

impl ReplayPolicy {
    /// The source for `actions` from wherever the episode starts, and the handle on the states
    /// it will observe (one per replayed action).
    pub fn new(actions: Vec<[f32; 7]>) -> (ReplayPolicy, ObservedStates) {
        let observed = ObservedStates::default();
        let policy = ReplayPolicy {
            actions,
            next: 0,
            observed: observed.clone(),
            lead_in: None,
            start: None,
            last_state: [0.0; 7],
        };
        (policy, observed)
    }

    /// [`ReplayPolicy::new`] that first drives to the recording's first Bridge state (position
    /// and yaw) within `limits` per step; the observed states start where the replay does.
    pub fn from_start(
        actions: Vec<[f32; 7]>,
        first_state: [f64; 7],
        limits: StepLimits,
    ) -> (ReplayPolicy, ObservedStates) {
        let (mut policy, observed) = ReplayPolicy::new(actions);
        let xyz_m = [first_state[0], first_state[1], first_state[2]];
        policy.start = Some(PoseTarget::new(xyz_m, Some(first_state[5]), limits));
        (policy, observed)
    }

    /// Steps the drive to the recorded start may take at most: the position part of the
    /// workspace diagonal at the step limit, and a margin.
    pub const LEAD_IN_STEPS: usize = 40;
}

impl Policy for ReplayPolicy {
    fn input_size_px(&self) -> u32 {
        SCRIPTED_INPUT_PX
    }

    fn set_goal(&mut self, goal: &GoalImage) -> Result<(), PolicyError> {
        self.next = 0;
        self.observed.take();
        self.lead_in = self.start.clone();
        if let Some(lead_in) = self.lead_in.as_mut() {
            lead_in.set_goal(goal)?;
        }
        Ok(())
    }

    fn act(&mut self, obs_model_rgb: &[u8]) -> Result<PolicyOutput, PolicyError> {
        if let Some(lead_in) = self.lead_in.as_mut() {
            if !lead_in.episode_done() {
                lead_in.observe_state(&self.last_state);
                return lead_in.act(obs_model_rgb);
            }
            self.lead_in = None;
        }
        let action = self.actions.get(self.next).copied().ok_or_else(|| {
            PolicyError::Failed(format!(
                "the recording has {} actions; none is left to replay",
                self.actions.len()
            ))
        })?;
        self.observed.push(self.last_state);
        self.next += 1;
        Ok(PolicyOutput {
            action,
            distance: f32::NAN,
            inference_s: 0.0,
        })
    }

    fn observe_state(&mut self, bridge_state: &[f64; 7]) {
        self.last_state = *bridge_state;
    }

    fn episode_done(&self) -> bool {
        self.lead_in.is_none() && self.next >= self.actions.len()
    }
}

/// How far a replayed end-effector path lies from the recorded one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathError {
    /// Observations compared (the shorter of the two paths).
    pub compared: usize,
    /// Mean and largest distance between the positions at the same step, m.
    pub mean_m: f64,
    pub max_m: f64,
    /// The step of the largest distance.
    pub max_at_step: usize,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "end-effector path error over {} observations: mean {:.1} mm, max {:.1} mm (at step {})",
            self.compared,
            self.mean_m * 1e3,
            self.max_m * 1e3,
            self.max_at_step
        )
    }
}

/// The position error, step by step, between a recorded episode's Bridge states and the states
/// of its replay; `None` when either is empty.
pub fn path_error(recorded: &[[f32; 7]], replayed: &[[f64; 7]]) -> Option<PathError> {
    let compared = recorded.len().min(replayed.len());
    if compared == 0 {
        return None;
    }
    let distances = recorded.iter().zip(replayed).map(|(a, b)| {
        (0..3)
            .map(|i| (f64::from(a[i]) - b[i]).powi(2))
            .sum::<f64>()
            .sqrt()
    });
    let mut error = PathError {
        compared,
        mean_m: 0.0,
        max_m: 0.0,
        max_at_step: 0,
    };
    for (step, d) in distances.enumerate() {
        error.mean_m += d / compared as f64;
        if d > error.max_m {
            error.max_m = d;
            error.max_at_step = step;
        }
    }
    Some(error)
}

/// Drives the gripper to a position (and yaw) from wherever the episode starts, in Bridge steps
/// no longer than the step limits, then holds one step and ends the episode.
///
/// It integrates its own commanded pose from the first state it observes, as the control
/// thread integrates deltas: a target inside the workspace box is then reached exactly.
#[derive(Debug, Clone)]
pub struct PoseTarget {
    xyz_m: [f64; 3],
    yaw_rad: Option<f64>,
    limits: StepLimits,
    commanded: Option<([f64; 3], f64)>,
    settled: bool,
}

impl PoseTarget {
    /// A target position, base frame, m; `yaw_rad` (Bridge state yaw) or keep the start yaw.
    pub fn new(xyz_m: [f64; 3], yaw_rad: Option<f64>, limits: StepLimits) -> PoseTarget {
        PoseTarget {
            xyz_m,
            yaw_rad,
            limits,
            commanded: None,
            settled: false,
        }
    }

    fn reached(&self, xyz_m: &[f64; 3], yaw_rad: f64) -> bool {
        let yaw_ok = self
            .yaw_rad
            .is_none_or(|target| (target - yaw_rad).abs() < 1e-9);
        yaw_ok && (0..3).all(|i| (self.xyz_m[i] - xyz_m[i]).abs() < 1e-9)
    }
}

impl Policy for PoseTarget {
    fn input_size_px(&self) -> u32 {
        SCRIPTED_INPUT_PX
    }

    fn set_goal(&mut self, _goal: &GoalImage) -> Result<(), PolicyError> {
        self.commanded = None;
        self.settled = false;
        Ok(())
    }

    fn observe_state(&mut self, bridge_state: &[f64; 7]) {
        if self.commanded.is_none() {
            let xyz = [bridge_state[0], bridge_state[1], bridge_state[2]];
            self.commanded = Some((xyz, bridge_state[5]));
        }
    }

    fn act(&mut self, _obs_model_rgb: &[u8]) -> Result<PolicyOutput, PolicyError> {
        let (mut xyz, mut yaw) = self.commanded.ok_or_else(|| {
            PolicyError::Failed("no arm state observed before the first step".into())
        })?;
        let clip = |delta: f64, max: f64| delta.clamp(-max, max);
        let mut action = [0.0f32; 7];
        for i in 0..3 {
            let delta = clip(self.xyz_m[i] - xyz[i], self.limits.max_step_m);
            xyz[i] += delta;
            action[i] = delta as f32;
        }
        if let Some(target) = self.yaw_rad {
            let delta = clip(target - yaw, self.limits.max_step_rad);
            yaw += delta;
            action[5] = delta as f32;
        }
        action[6] = 1.0;
        // One step after the target is commanded, the arm has had a step's time to get there.
        self.settled = self
            .commanded
            .is_some_and(|(before, before_yaw)| self.reached(&before, before_yaw));
        self.commanded = Some((xyz, yaw));
        Ok(PolicyOutput {
            action,
            distance: f32::NAN,
            inference_s: 0.0,
        })
    }

    fn episode_done(&self) -> bool {
        self.settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_gives_the_actions_in_order_then_is_done() {
        let actions = vec![
            [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [0.0, -0.02, 0.0, 0.0, 0.0, 0.0, 0.0],
        ];
        let (mut replay, observed) = ReplayPolicy::new(actions.clone());
        for (t, expected) in actions.iter().enumerate() {
            assert!(!replay.episode_done());
            replay.observe_state(&[t as f64; 7]);
            assert_eq!(&replay.act(&[]).unwrap().action, expected);
        }
        assert!(replay.episode_done());
        assert!(replay.act(&[]).is_err(), "nothing is left to replay");
        assert_eq!(observed.take(), vec![[0.0; 7], [1.0; 7]]);
    }

    #[test]
    fn replay_from_a_recorded_start_drives_there_first() {
        let actions = vec![[0.0, 0.02, 0.0, 0.0, 0.0, 0.0, 1.0]];
        let first_state = [0.38, 0.0, 0.15, 0.0, 0.0, 0.0, 1.0];
        let (mut replay, observed) =
            ReplayPolicy::from_start(actions.clone(), first_state, StepLimits::BRIDGE);
        replay.set_goal(&goal()).unwrap();
        let mut state = [0.3, 0.0, 0.15, 0.0, 0.0, 0.0, 1.0];
        let mut taken = Vec::new();
        while !replay.episode_done() {
            replay.observe_state(&state);
            let action = replay.act(&[]).unwrap().action;
            for i in 0..3 {
                state[i] += f64::from(action[i]);
            }
            taken.push(action);
            assert!(taken.len() < 10, "never replayed: {taken:?}");
        }
        // 8 cm in x at 5 cm per step, a settling step, then the recorded action.
        assert_eq!(taken.len(), 4, "{taken:?}");
        assert_eq!(taken.last(), actions.last());
        let observed = observed.take();
        assert_eq!(observed.len(), 1, "only the replayed steps are compared");
        assert!((observed[0][0] - 0.38).abs() < 1e-6, "{observed:?}");
        // A second episode drives there again.
        replay.set_goal(&goal()).unwrap();
        assert!(!replay.episode_done());
    }

    fn goal() -> GoalImage {
        GoalImage::from_rgb(std::path::Path::new("(test)"), &[0; 8 * 8 * 3], 8, 8, 8u32).unwrap()
    }

    #[test]
    fn path_error_is_the_position_distance_per_step() {
        let recorded = [
            [0.3f32, 0.0, 0.1, 0.5, 0.5, 0.5, 1.0],
            [0.3, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0],
        ];
        let replayed = [
            [0.3, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0],
            [0.3, 0.003, 0.104, 0.0, 0.0, 0.0, 0.0],
        ];
        let error = path_error(&recorded, &replayed).unwrap();
        assert_eq!(error.compared, 2);
        assert!((error.max_m - 0.005).abs() < 1e-6, "{error}");
        assert_eq!(error.max_at_step, 1);
        assert!((error.mean_m - 0.0025).abs() < 1e-6);
        assert!(path_error(&recorded, &[]).is_none());
    }

    #[test]
    fn a_pose_target_steps_within_the_limits_and_ends_after_settling() {
        let mut target = PoseTarget::new([0.4, 0.1, 0.1], Some(0.3), StepLimits::BRIDGE);
        target.observe_state(&[0.3, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0]);
        let mut at = [0.3, 0.0, 0.1];
        let mut yaw = 0.0;
        let mut steps = 0;
        while !target.episode_done() {
            let action = target.act(&[]).unwrap().action;
            assert!(
                action[..3].iter().all(|d| d.abs() <= 0.05 + 1e-6),
                "{action:?}"
            );
            assert!(action[5].abs() <= 0.25 + 1e-6);
            for i in 0..3 {
                at[i] += f64::from(action[i]);
            }
            yaw += f64::from(action[5]);
            steps += 1;
            assert!(steps < 10, "never settled");
        }
        // 0.1 m in x at 0.05 per step: 2 moving steps, then one holding step.
        assert_eq!(steps, 3);
        assert!((at[0] - 0.4).abs() < 1e-6 && (at[1] - 0.1).abs() < 1e-6);
        assert!((yaw - 0.3).abs() < 1e-6);
    }
}
