//! The policy thread: every `policy_period_s` while the control thread is Running, takes the
//! newest camera frame (never one older than `max_frame_age_s`), squashes it to the model
//! input, runs the [`Policy`], hands the action to the control thread through a freshest-value
//! mailbox, and records the step (observation then action) through the recorder.
//!
//! Ticks are scheduled on a fixed grid: a slow inference delays one step, not all that follow.
//! The control thread never waits on this thread; its policy watchdog notices when it is late.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge_data::raw::RawStep;
use bridge_data::{Outcome, StepKind};
use camera::Frame;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use widowx::bridge::BridgeAction;
use widowx::kinematics::forward;
use widowx_driver::Effort;

use crate::config::RuntimeConfig;
use crate::messages::{
    ControlStatus, Interventions, MonitorMsg, PolicyAction, PolicyReport, PolicyRequest,
    PolicyStatus, RecorderMsg, RecordingPlan, StepRecord,
};

use crate::frames::FrameSlot;
use crate::mailbox::Mailbox;
use crate::modes::Mode;

use crate::policy::{GoalImage, Policy};
use crate::recorder::RecorderSender;

/// The policy thread's ends of its channels.
pub struct PolicyLinks {
    pub requests: Receiver<PolicyRequest>,
    pub reports: Sender<PolicyReport>,
    pub monitor: Sender<MonitorMsg>,
    pub frames: FrameSlot,
    pub control: Mailbox<ControlStatus>,
    pub actions: Mailbox<Option<PolicyAction>>,
    pub status: Mailbox<PolicyStatus>,
    pub recorder: Option<RecorderSender>,
}

struct Active {
    episode: u64,
    max_steps: usize,
    steps: usize,
    next_tick: Instant,
    recording: Option<PathBuf>,
    /// The run report wants each step's camera frame.
    keep_frames: bool,
    /// The operator's actions counted when the last recorded action was taken.
    interventions_at_action: Option<Interventions>,
    /// Last reason a step was skipped (reported once per run of skips).
    skipping: Option<&'static str>,
}

struct PolicyThread {
    policy: Box<dyn Policy>,
    links: PolicyLinks,
    period: Duration,
    max_frame_age_s: f64,
    obs: Vec<u8>,
}

/// Starts the policy thread.
pub fn spawn(
    policy: Box<dyn Policy>,
    config: &RuntimeConfig,
    links: PolicyLinks,
) -> Result<JoinHandle<()>, crate::RunError> {
    let mut thread = PolicyThread {
        policy,
        links,
        period: Duration::from_secs_f64(config.policy.policy_period_s),
        max_frame_age_s: config.policy.max_frame_age_s,
        obs: Vec::new(),
    };
    std::thread::Builder::new()
        .name("bridge-run-policy".into())
        .spawn(move || thread.run())
        .map_err(|source| crate::RunError::Thread {
            thread: "policy",
            source,
        })
}

impl PolicyThread {
    fn run(&mut self) {
        let mut active: Option<Active> = None;
        loop {
            let timeout = active.as_ref().map_or(Duration::from_millis(100), |a| {
                a.next_tick.saturating_duration_since(Instant::now())
            });
            match self.links.requests.recv_timeout(timeout) {
                Ok(PolicyRequest::Start {
                    episode,
                    goal,
                    max_steps,
                    recording,
                    keep_frames,
                }) => {
                    if let Some(old) = active.take() {
                        self.stop(
                            old,
                            Outcome::aborted("a new episode started before this one ended"),
                        );
                    }
                    active = self.start(episode, &goal, max_steps, recording, keep_frames);
                }
                Ok(PolicyRequest::Stop { episode, outcome }) => {
                    if let Some(a) = active.take_if(|a| a.episode == episode) {
                        self.stop(a, outcome);
                    }
                }
                Ok(PolicyRequest::Exit) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Some(a) = active.as_mut()
                && Instant::now() >= a.next_tick
            {
                a.next_tick += self.period;
                if a.next_tick < Instant::now() {
                    a.next_tick = Instant::now() + self.period; // behind: skip, don't bunch up
                }
                self.tick(a);
            }
        }
        if let Some(a) = active.take() {
            self.stop(
                a,
                Outcome::aborted("the runtime stopped before the episode ended"),
            );
        }
    }

    fn note(&self, text: String, safety: bool) {
        let _ = self.links.monitor.send(MonitorMsg::Note {
            at: Instant::now(),
            source: "policy",
            text,
            safety,
        });
    }

    fn start(
        &mut self,
        episode: u64,
        goal: &GoalImage,
        max_steps: usize,
        recording: Option<RecordingPlan>,
        keep_frames: bool,
    ) -> Option<Active> {
        let result = self.policy.set_goal(goal).map_err(|e| e.to_string());
        let ok = result.is_ok();
        let _ = self
            .links
            .reports
            .send(PolicyReport::Started { episode, result });
        if !ok {
            return None;
        }
        let recording = recording.and_then(|plan| {
            let recorder = self.links.recorder.as_ref()?;
            recorder
                .try_send(RecorderMsg::StartEpisode {
                    dir: plan.dir.clone(),
                    language: plan.language,
                })
                .then_some(plan.dir)
        });
        self.links.status.put(PolicyStatus {
            episode,
            steps: 0,
            max_steps,
            last_inference_s: 0.0,
            last_distance: f32::NAN,
        });
        Some(Active {
            episode,
            max_steps,
            steps: 0,
            next_tick: Instant::now(),
            recording,
            interventions_at_action: None,
            keep_frames,
            skipping: None,
        })
    }

    fn stop(&mut self, mut active: Active, outcome: Outcome) {
        if active.recording.is_some() {
            // The final observation (T+1 for T actions), as the Bridge stack records it; a
            // stale frame (stalled camera) is left out rather than recorded as current.
            let fresh =
                |f: &Arc<Frame>| f.captured_at.elapsed().as_secs_f64() <= self.max_frame_age_s;
            let status = self.links.control.get();
            self.mark_last_action(&mut active, &status);
            if let Some(frame) = self.links.frames.latest().filter(fresh) {
                self.record_observation(self.jpeg_of(&frame), &status);
            }
            self.send_to_recorder(RecorderMsg::EndEpisode(outcome));
        }
        let _ = self.links.reports.send(PolicyReport::Stopped {
            episode: active.episode,
            steps: active.steps,
            recording: active.recording,
        });
    }

    fn skip(&self, active: &mut Active, reason: &'static str, detail: String) {
        if active.skipping != Some(reason) {
            active.skipping = Some(reason);
            self.note(format!("step skipped, the arm holds: {detail}"), true);
        }
    }

    fn tick(&mut self, active: &mut Active) {
        let status = self.links.control.get();
        if status.mode != Mode::Running || status.episode != active.episode {
            return;
        }
        if active.steps >= active.max_steps {
            return;
        }
        // The next frame rather than the newest: that one may be a whole frame interval old.
        let newest = self.links.frames.latest();
        let wait =
            Duration::from_secs_f64(self.max_frame_age_s.min(self.period.as_secs_f64() / 2.0));
        let next = self.links.frames.next_after(newest.as_ref(), wait);
        let Some(frame) = next.or(newest) else {
            self.skip(active, "no-frame", "no camera frame yet".into());
            return;
        };
        let frame_age_s = frame.captured_at.elapsed().as_secs_f64();
        if frame_age_s > self.max_frame_age_s {
            let detail = format!(
                "newest frame is {frame_age_s:.2} s old (max_frame_age_s {})",
                self.max_frame_age_s
            );
            self.skip(active, "stale-frame", detail);
            return;
        }
        let view = self.policy.input_view();
        if let Err(e) = view.apply(&frame.rgb, frame.width_px, frame.height_px, &mut self.obs) {
            self.skip(
                active,
                "bad-frame",
                format!("frame cannot be preprocessed: {e}"),
            );
            return;
        }
        self.policy.observe_state(&status.bridge_state());
        let output = match self.policy.act(&self.obs) {
            Ok(output) => output,
            Err(e) => {
                self.skip(active, "policy-error", format!("the policy failed: {e}"));
                return;
            }
        };
        active.skipping = None;
        let step = active.steps;
        let action = output.action.map(f64::from);
        self.links.actions.put(Some(PolicyAction {
            episode: active.episode,
            step,
            action: BridgeAction::from_array(action),
            frame_captured_at: frame.captured_at,
        }));
        active.steps += 1;
        // After the action is out: encoding takes milliseconds.
        let frame_jpeg = if active.keep_frames || active.recording.is_some() {
            self.jpeg_of(&frame).map(Arc::new)
        } else {
            None
        };
        self.links.status.put(PolicyStatus {
            episode: active.episode,
            steps: active.steps,
            max_steps: active.max_steps,
            last_inference_s: output.inference_s,
            last_distance: output.distance,
        });
        let _ = self.links.reports.send(PolicyReport::Step(StepRecord {
            episode: active.episode,
            step,
            action: output.action,
            distance: output.distance,
            inference_s: output.inference_s,
            frame_age_s,
            obs_model_rgb: self.obs.clone(),
            captured_at: frame.captured_at,
            frame_jpeg: frame_jpeg.clone(),
        }));
        if active.recording.is_some() && output.is_finite() {
            self.mark_last_action(active, &status);
            self.record_observation(frame_jpeg.map(|jpeg| jpeg.as_ref().clone()), &status);
            let action = BridgeAction::from_array(action);
            self.send_to_recorder(match self.policy.step_kind() {
                StepKind::Policy => RecorderMsg::Action(action),
                kind => RecorderMsg::ActionOf(action, kind),
            });
            active.interventions_at_action = Some(status.interventions);
        }
        if active.steps == active.max_steps || self.policy.episode_done() {
            active.max_steps = active.steps;
            let _ = self.links.reports.send(PolicyReport::Finished {
                episode: active.episode,
                steps: active.steps,
            });
        }
    }

    /// Flags the last recorded action's step when the operator jogged or paused since it was
    /// taken (before the observation that ends the step is recorded).
    fn mark_last_action(&self, active: &mut Active, status: &ControlStatus) {
        if let Some(at_action) = active.interventions_at_action.take() {
            let kind = at_action.step_kind_until(status.interventions);
            if kind != StepKind::Policy {
                self.send_to_recorder(RecorderMsg::MarkLastAction(kind));
            }
        }
    }

    fn send_to_recorder(&self, msg: RecorderMsg) {
        if let Some(recorder) = &self.links.recorder {
            // A full queue drops the message; the recorder closes the episode consistently.
            let _ = recorder.try_send(msg);
        }
    }

    /// The frame as JPEG; `None` (and a note) when it cannot be encoded.
    fn jpeg_of(&self, frame: &Frame) -> Option<Vec<u8>> {
        match encode_jpeg(frame) {
            Ok(jpeg) => Some(jpeg),
            Err(e) => {
                self.note(
                    format!("cannot encode the camera frame as JPEG: {e}"),
                    false,
                );
                None
            }
        }
    }

    /// Records an observation with its frame's JPEG (none: the frame could not be encoded, and
    /// the observation is left out).
    fn record_observation(&self, jpeg: Option<Vec<u8>>, status: &ControlStatus) {
        if let Some(jpeg) = jpeg {
            self.send_to_recorder(RecorderMsg::Observation(raw_step(jpeg, status)));
        }
    }
}

/// The frame as JPEG (quality 90), as images0 of the raw layout.
pub fn encode_jpeg(frame: &Frame) -> Result<Vec<u8>, image::ImageError> {
    let mut jpeg = Vec::with_capacity(64 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode(
        &frame.rgb,
        frame.width_px,
        frame.height_px,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(jpeg)
}

/// One recorded observation from a frame's JPEG and the control thread's snapshot.
pub fn raw_step(jpeg: Vec<u8>, status: &ControlStatus) -> RawStep {
    let state = &status.state;
    let qpos = state.arm_positions_rad();
    let effort = |e: Effort| match e {
        Effort::CurrentMa(ma) => ma,
        Effort::LoadPercent(p) => p,
    };
    RawStep {
        jpeg,
        state: status.bridge_state(),
        qpos,
        qvel: std::array::from_fn(|i| state.velocities_rad_s[i]),
        joint_effort: std::array::from_fn(|i| effort(state.effort[i])),
        eef_transform: forward(&qpos).to_matrix(),
        time_stamp_s: crate::clock::unix_time_s(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::bridge::{bridge_state, gripper_open_fraction};

    #[test]
    fn raw_steps_carry_the_bridge_state_of_the_joints() {
        let mut state = widowx_driver::JointState::default();
        let joints = widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;
        state.positions_rad[..6].copy_from_slice(&joints);
        state.positions_rad[6] = 0.9;
        state.effort[2] = Effort::CurrentMa(120.0);
        let status = crate::control::tests_support::status(state);
        let step = raw_step(vec![1, 2], &status);
        assert_eq!(step.qpos, joints);
        // The gripper entry is the fingers' position, as the simulator's play data records it.
        assert_eq!(
            step.state,
            bridge_state(&joints, gripper_open_fraction(0.9))
        );
        assert_eq!(step.joint_effort[2], 120.0);
        assert_eq!(step.eef_transform[3], [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn frames_encode_as_decodable_jpeg() {
        let frame = Frame {
            rgb: vec![200; 64 * 48 * 3],
            width_px: 64,
            height_px: 48,
            captured_at: Instant::now(),
            sequence: 0,
        };
        let jpeg = encode_jpeg(&frame).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
    }
}
