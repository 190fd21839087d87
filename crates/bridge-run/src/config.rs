//! The runtime's settings: one TOML file of sections whose keys carry their units, every key
//! optional (defaults in code, [`RuntimeConfig::default`]), unknown keys rejected.
//! `bridge-run config` prints the resolved file.
//!
//! The workspace box and start pose may also come from a station's `calibration/workspace.toml`
//! (a `[workspace]` table with the same keys), read by [`RuntimeConfig::load`] before the
//! `--config` file, which wins.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use widowx::bridge::{StepLimits, WorkspaceBox};

use crate::error::RunError;

/// Everything `bridge-run` can be told, by section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    pub control: ControlConfig,
    pub policy: PolicyConfig,
    pub action: ActionConfig,
    pub workspace: WorkspaceConfig,
    pub safety: SafetyConfig,
    pub episode: EpisodeConfig,
    pub camera: CameraConfig,
    pub teleop: TeleopConfig,
}

/// Keyboard teleoperation (`bridge-run teleop`): rate control, since a terminal sends a held
/// key as a press, a pause, then repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeleopConfig {
    /// Speed of the gripper while a move key is held, m/s. Default 0.05 (1 cm per 5 Hz step).
    pub speed_m_s: f64,
    /// Turn rate about the vertical while a yaw key is held, rad/s. Default 0.5.
    pub yaw_speed_rad_s: f64,
    /// A first press moves for this long, covering the terminal's delay before it repeats a
    /// held key, s. Default 0.6 (X11's 660 ms delay is covered by the first repeat arriving
    /// within it plus `repeat_hold_s`).
    pub key_hold_s: f64,
    /// Each repeat of a held key extends the move by this much, longer than the repeat
    /// interval (25-40 ms) and short enough to stop soon after release, s. Default 0.15.
    pub repeat_hold_s: f64,
}

impl Default for TeleopConfig {
    fn default() -> Self {
        TeleopConfig {
            speed_m_s: 0.05,
            yaw_speed_rad_s: 0.5,
            key_hold_s: 0.6,
            repeat_hold_s: 0.15,
        }
    }
}

/// The camera (`--sim` renders the tabletop instead; `--camera-folder` replays images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// V4L2 camera: an index ("0" for /dev/video0) or part of its name ("C920"). Default "0".
    pub device: String,
    /// Capture size, px. Default 640 x 480 (the Bridge camera).
    pub width_px: u32,
    pub height_px: u32,
    /// Capture rate, frames/s. Default 30.
    pub fps: u32,
    /// "mjpeg" or "yuyv". Default "mjpeg".
    pub pixel_format: String,
    /// Frame rate of the simulated camera, frames/s. Default 30.
    pub sim_fps: f64,
    /// Frame rate of a replayed image folder, frames/s. Default 5.
    pub folder_fps: f64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            device: "0".into(),
            width_px: 640,
            height_px: 480,
            fps: 30,
            pixel_format: "mjpeg".into(),
            sim_fps: 30.0,
            folder_fps: 5.0,
        }
    }
}

/// The servo loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Period of the control loop (one sync read, one sync write), s. Default 0.01 (100 Hz).
    pub control_period_s: f64,
    /// Profile time of the goal written every tick, s. Default 0.02: a little longer than a
    /// period, so the servo glides from setpoint to setpoint instead of stopping at each.
    pub servo_move_time_s: f64,
    /// Time over which one policy step's joint motion is spread, s. Default 0.25 (the stock
    /// Bridge profile of 1.25 policy periods): the arm is still moving when the next step comes.
    pub move_time_s: f64,
    /// Time over which one keyboard jog is spread, s. Default 0.2.
    pub jog_move_time_s: f64,
    /// Speed of the joint-space moves to the start pose and to the sleep pose, rad/s. Default 0.8.
    pub reset_speed_rad_s: f64,
    /// A reset or park move has arrived when every joint is this close to its goal, rad. Default 0.03.
    pub reached_tolerance_rad: f64,
    /// Once a reset or park move's setpoint has arrived, the arm must be there within this, s.
    /// Default 3.0.
    pub reach_timeout_s: f64,
    /// SCHED_FIFO priority (1..=99) the control thread asks for; 0: normal scheduling. Default
    /// 80. Without the permission the run goes on at normal priority and says how to grant it.
    pub realtime_priority: u8,
    /// Lock the process's memory (mlockall) so no page of the control loop is swapped out.
    /// Default true; like the priority, it needs a permission and is skipped with a word without.
    pub lock_memory: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            control_period_s: 0.01,
            servo_move_time_s: 0.02,
            move_time_s: 0.25,
            jog_move_time_s: 0.2,
            reset_speed_rad_s: 0.8,
            reached_tolerance_rad: 0.03,
            reach_timeout_s: 3.0,
            realtime_priority: 80,
            lock_memory: true,
        }
    }
}

/// The policy thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// One policy step every this many seconds. Default 0.2 (5 Hz, as Bridge).
    pub policy_period_s: f64,
    /// The policy never acts on a frame older than this, s. Default 0.3.
    pub max_frame_age_s: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            policy_period_s: 0.2,
            max_frame_age_s: 0.3,
        }
    }
}

/// How a Bridge action becomes a target (docs/widowx.md, "Bridge conventions").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionConfig {
    /// Each translation component is clipped to +-this per step, m. Default 0.05.
    pub max_step_m: f64,
    /// Each rotation component is clipped to +-this per step, rad. Default 0.25.
    pub max_step_rad: f64,
    /// The gripper closes when the action's gripper value is below this. Default 0.5.
    pub gripper_threshold: f64,
    /// The gripper changes state only after this many consecutive steps ask for the other
    /// state (sticky gripper). Default 1.
    pub gripper_sticky_steps: u32,
    /// An IK solution moving any joint further than this from the last commanded joints is
    /// refused and the arm holds, rad. Default 0.5.
    pub max_ik_jump_rad: f64,
    /// One keyboard jog moves the commanded position this far, m. Default 0.01.
    pub jog_step_m: f64,
}

/// Bridge's own step limits and gripper threshold (`widowx::bridge`).
impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            max_step_m: StepLimits::BRIDGE.max_step_m,
            max_step_rad: StepLimits::BRIDGE.max_step_rad,
            gripper_threshold: widowx::bridge::GRIPPER_CLOSE_BELOW,
            gripper_sticky_steps: 1,
            max_ik_jump_rad: 0.5,
            jog_step_m: 0.01,
        }
    }
}

/// The box the commanded position stays in, and where episodes start (base frame, m).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Lower corner [x, y, z], m. Default [0.10, -0.15, -0.01].
    pub min_m: [f64; 3],
    /// Upper corner [x, y, z], m. Default [0.45, 0.25, 0.25].
    pub max_m: [f64; 3],
    /// Start position of every episode, m. Default [0.3, 0.0, 0.15].
    pub start_xyz_m: [f64; 3],
    /// Start orientation, Bridge roll-pitch-yaw relative to the gripper pointing down, rad.
    /// Default [0, 0, 0].
    pub start_rpy_rad: [f64; 3],
}

/// Bridge's own (`widowx::bridge`): the evaluation box and the start pose.
impl Default for WorkspaceConfig {
    fn default() -> Self {
        let bridge = WorkspaceBox::BRIDGE_EVAL;
        WorkspaceConfig {
            min_m: bridge.min_m,
            max_m: bridge.max_m,
            start_xyz_m: widowx::bridge::START_XYZ_M,
            start_rpy_rad: widowx::bridge::START_RPY_RAD,
        }
    }
}

impl ActionConfig {
    /// The configured per-step clipping.
    pub fn step_limits(&self) -> StepLimits {
        StepLimits {
            max_step_m: self.max_step_m,
            max_step_rad: self.max_step_rad,
        }
    }
}

impl WorkspaceConfig {
    /// The configured box.
    pub fn workspace_box(&self) -> WorkspaceBox {
        WorkspaceBox {
            min_m: self.min_m,
            max_m: self.max_m,
        }
    }

    /// `xyz_m` moved to the nearest point of the box.
    pub fn clamp(&self, xyz_m: [f64; 3]) -> [f64; 3] {
        self.workspace_box().clamp(xyz_m)
    }

    /// How far `xyz_m` lies outside the box (0 inside), m.
    pub fn distance_outside_m(&self, xyz_m: [f64; 3]) -> f64 {
        self.workspace_box().distance_outside_m(xyz_m)
    }
}

/// Limits the supervisor enforces on the control thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Largest change of any joint's setpoint from one tick to the next, rad. Default 0.01
    /// (1 rad/s at 100 Hz; each tick's short move then peaks well below the servos' pi rad/s
    /// velocity limit, so they keep up); longer moves are spread over more ticks.
    pub max_joint_step_per_tick_rad: f64,
    /// A measured joint speed above this on `velocity_trip_ticks` consecutive ticks holds the
    /// arm, rad/s. Default 3.3: above the servos' own Velocity_Limit (pi rad/s), so it trips only
    /// when something else moves the joint (falling without torque, pushed), never when a servo
    /// catches up with its setpoint at full speed.
    pub max_joint_velocity_rad_s: f64,
    /// Consecutive ticks over the speed limit that trip it. Default 3: a single reading over it
    /// (a servo re-planning a short move) is not a runaway joint.
    pub velocity_trip_ticks: u32,
    /// A measured joint this far beyond its URDF limits holds the arm, rad. Default 0.05.
    pub joint_limit_margin_rad: f64,
    /// A measured end effector this far outside the workspace box holds the arm, m. Default 0.04.
    pub workspace_margin_m: f64,
    /// A joint this far from its setpoint holds the arm (collision, lost torque), rad. Default 0.35.
    pub max_tracking_error_rad: f64,
    /// Effort trip of the joints that measure current (XM430), per joint in `Joint::ALL` order
    /// (waist..wrist_rotate, gripper), mA; ignored for joints that report load. Default 1800 each.
    pub effort_trip_current_ma: [f64; 7],
    /// Effort trip of the joints that report load (XL430), per joint in `Joint::ALL` order, %
    /// of maximum torque; ignored for joints that measure current. Default 90, the gripper 101
    /// (never: it grips at a constant PWM).
    pub effort_trip_load_percent: [f64; 7],
    /// While the policy drives, no new action for this long holds the arm, s. Default 1.2.
    pub policy_timeout_s: f64,
    /// While the policy drives, no new camera frame for this long holds the arm, s. Default 1.0.
    pub camera_timeout_s: f64,
    /// Bus failures (no reply, corrupt replies) lasting this long hold the arm, s. Default 0.5.
    pub bus_timeout_s: f64,
    /// Without a keyboard (`--no-keyboard`) nobody can answer a hold after a fault: the arm
    /// holds where it stopped this long, then torque goes off where it stands. It is never
    /// moved. s. Default 30.
    pub unattended_hold_s: f64,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            max_joint_step_per_tick_rad: 0.01,
            max_joint_velocity_rad_s: 3.3,
            velocity_trip_ticks: 3,
            joint_limit_margin_rad: 0.05,
            workspace_margin_m: 0.04,
            max_tracking_error_rad: 0.35,
            effort_trip_current_ma: [1800.0; 7],
            effort_trip_load_percent: [90.0, 90.0, 90.0, 90.0, 90.0, 90.0, 101.0],
            policy_timeout_s: 1.2,
            camera_timeout_s: 1.0,
            bus_timeout_s: 0.5,
            unattended_hold_s: 30.0,
        }
    }
}

/// Episodes, recordings and the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpisodeConfig {
    /// Policy steps per episode at most. Default 120 (Bridge evaluation).
    pub max_steps: usize,
    /// Record every episode in the BridgeData V2 raw layout. Default true.
    pub record: bool,
    /// Where recordings and run reports go. Default "recordings".
    pub recording_dir: PathBuf,
    /// Written to each recording's lang.txt when set. Default none.
    pub language: Option<String>,
    /// Write a run report (animation, plots, events) per episode. Default true.
    pub report: bool,
    /// Every mode change and safety event is appended here. Default "bridge-run.log".
    pub log_file: PathBuf,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            max_steps: 120,
            record: true,
            recording_dir: PathBuf::from("recordings"),
            language: None,
            report: true,
            log_file: PathBuf::from("bridge-run.log"),
        }
    }
}

/// The optional station file with the workspace box and start pose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceFile {
    workspace: WorkspaceConfig,
}

/// Where a station keeps its workspace calibration, relative to the working directory.
pub const WORKSPACE_CALIBRATION_FILE: &str = "calibration/workspace.toml";

impl RuntimeConfig {
    /// The defaults, then `calibration` (when given and present: its `[workspace]` table), then
    /// `file` (when given), checked.
    pub fn load(
        file: Option<&Path>,
        calibration: Option<&Path>,
    ) -> Result<RuntimeConfig, RunError> {
        let mut config = RuntimeConfig::default();
        if let Some(path) = calibration.filter(|p| p.exists()) {
            let text = read(path)?;
            let station: WorkspaceFile = toml::from_str(&text).map_err(|e| RunError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            config.workspace = station.workspace;
        }
        if let Some(path) = file {
            let text = read(path)?;
            config = RuntimeConfig::from_toml_over(&text, &config).map_err(|reason| {
                RunError::Config {
                    path: path.to_path_buf(),
                    reason,
                }
            })?;
        }
        config.validate().map_err(|reason| RunError::Config {
            path: file.map_or_else(|| PathBuf::from("(defaults)"), Path::to_path_buf),
            reason,
        })?;
        Ok(config)
    }

    /// `text` parsed with every absent key taken from `base` (section by section: a section
    /// the file names starts from the defaults of code, except `[workspace]`, which starts from `base`).
    fn from_toml_over(text: &str, base: &RuntimeConfig) -> Result<RuntimeConfig, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config: RuntimeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if !table.contains_key("workspace") {
            config.workspace = base.workspace.clone();
        } else {
            let mut merged = toml::Table::try_from(&base.workspace).map_err(|e| e.to_string())?;
            if let Some(toml::Value::Table(given)) = table.get("workspace") {
                for (key, value) in given {
                    merged.insert(key.clone(), value.clone());
                }
            }
            config.workspace = merged
                .try_into()
                .map_err(|e: toml::de::Error| format!("[workspace]: {e}"))?;
        }
        Ok(config)
    }

    /// The resolved configuration as TOML (what `bridge-run config` prints).
    pub fn to_toml(&self) -> String {
        // Serialising plain numbers, arrays and strings cannot fail.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// Checks every range, naming the key that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.control;
        positive("control.control_period_s", c.control_period_s, 0.5)?;
        if c.realtime_priority > 99 {
            return Err(format!(
                "control.realtime_priority {} is out of range: expected 0 (normal scheduling) or 1..=99 (SCHED_FIFO)",
                c.realtime_priority
            ));
        }
        positive("control.servo_move_time_s", c.servo_move_time_s, 1.0)?;
        positive("control.move_time_s", c.move_time_s, 10.0)?;
        positive("control.jog_move_time_s", c.jog_move_time_s, 10.0)?;
        positive("control.reset_speed_rad_s", c.reset_speed_rad_s, 3.0)?;
        positive(
            "control.reached_tolerance_rad",
            c.reached_tolerance_rad,
            0.5,
        )?;
        positive("control.reach_timeout_s", c.reach_timeout_s, 60.0)?;
        let p = &self.policy;
        positive("policy.policy_period_s", p.policy_period_s, 10.0)?;
        positive("policy.max_frame_age_s", p.max_frame_age_s, 10.0)?;
        if p.policy_period_s < c.control_period_s {
            return Err(format!(
                "policy.policy_period_s ({}) must be at least control.control_period_s ({})",
                p.policy_period_s, c.control_period_s
            ));
        }
        let a = &self.action;
        positive("action.max_step_m", a.max_step_m, 0.5)?;
        positive("action.max_step_rad", a.max_step_rad, 1.0)?;
        positive("action.max_ik_jump_rad", a.max_ik_jump_rad, 3.2)?;
        positive("action.jog_step_m", a.jog_step_m, 0.1)?;
        if !(a.gripper_threshold.is_finite() && (0.0..=1.0).contains(&a.gripper_threshold)) {
            return Err(format!(
                "action.gripper_threshold is {}, expected a value in 0..=1",
                a.gripper_threshold
            ));
        }
        if a.gripper_sticky_steps == 0 {
            return Err("action.gripper_sticky_steps is 0, expected at least 1".into());
        }
        let t = &self.teleop;
        positive("teleop.speed_m_s", t.speed_m_s, 0.5)?;
        positive("teleop.yaw_speed_rad_s", t.yaw_speed_rad_s, 2.0)?;
        positive("teleop.key_hold_s", t.key_hold_s, 2.0)?;
        positive("teleop.repeat_hold_s", t.repeat_hold_s, 1.0)?;
        self.validate_workspace()?;
        self.validate_safety()?;
        self.validate_camera()
    }

    fn validate_camera(&self) -> Result<(), String> {
        let c = &self.camera;
        if c.width_px == 0 || c.height_px == 0 || c.fps == 0 {
            return Err("camera.width_px, camera.height_px and camera.fps must be above 0".into());
        }
        if !matches!(c.pixel_format.as_str(), "mjpeg" | "yuyv") {
            return Err(format!(
                "camera.pixel_format is \"{}\", expected \"mjpeg\" or \"yuyv\"",
                c.pixel_format
            ));
        }
        positive("camera.sim_fps", c.sim_fps, 240.0)?;
        positive("camera.folder_fps", c.folder_fps, 240.0)?;
        if c.device.trim().is_empty() {
            return Err(
                "camera.device is empty, expected an index (\"0\") or a name (\"C920\")".into(),
            );
        }
        Ok(())
    }

    fn validate_workspace(&self) -> Result<(), String> {
        let w = &self.workspace;
        let all_finite = w
            .min_m
            .iter()
            .chain(&w.max_m)
            .chain(&w.start_xyz_m)
            .chain(&w.start_rpy_rad)
            .all(|v| v.is_finite());
        if !all_finite {
            return Err("[workspace] holds a value that is not finite".into());
        }
        for (i, axis) in ["x", "y", "z"].iter().enumerate() {
            if w.min_m[i] >= w.max_m[i] {
                return Err(format!(
                    "workspace.min_m[{i}] ({axis} = {}) must be below workspace.max_m[{i}] ({})",
                    w.min_m[i], w.max_m[i]
                ));
            }
        }
        if w.distance_outside_m(w.start_xyz_m) > 0.0 {
            return Err(format!(
                "workspace.start_xyz_m {:?} lies outside the box {:?}..{:?}",
                w.start_xyz_m, w.min_m, w.max_m
            ));
        }
        Ok(())
    }

    fn validate_safety(&self) -> Result<(), String> {
        let s = &self.safety;
        positive(
            "safety.max_joint_step_per_tick_rad",
            s.max_joint_step_per_tick_rad,
            0.5,
        )?;
        positive(
            "safety.max_joint_velocity_rad_s",
            s.max_joint_velocity_rad_s,
            10.0,
        )?;
        if s.velocity_trip_ticks == 0 {
            return Err("safety.velocity_trip_ticks is 0, expected at least 1".into());
        }
        positive(
            "safety.joint_limit_margin_rad",
            s.joint_limit_margin_rad,
            1.0,
        )?;
        positive("safety.workspace_margin_m", s.workspace_margin_m, 1.0)?;
        positive(
            "safety.max_tracking_error_rad",
            s.max_tracking_error_rad,
            3.2,
        )?;
        positive("safety.policy_timeout_s", s.policy_timeout_s, 60.0)?;
        positive("safety.camera_timeout_s", s.camera_timeout_s, 60.0)?;
        positive("safety.bus_timeout_s", s.bus_timeout_s, 60.0)?;
        positive("safety.unattended_hold_s", s.unattended_hold_s, 3600.0)?;
        for (i, v) in s.effort_trip_current_ma.iter().enumerate() {
            positive(&format!("safety.effort_trip_current_ma[{i}]"), *v, 1e6)?;
        }
        for (i, v) in s.effort_trip_load_percent.iter().enumerate() {
            positive(&format!("safety.effort_trip_load_percent[{i}]"), *v, 1e6)?;
        }
        if s.policy_timeout_s < self.policy.policy_period_s {
            return Err(format!(
                "safety.policy_timeout_s ({}) must be at least policy.policy_period_s ({})",
                s.policy_timeout_s, self.policy.policy_period_s
            ));
        }
        Ok(())
    }
}

fn positive(key: &str, value: f64, max: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(())
    } else {
        Err(format!("{key} is {value}, expected a value in (0, {max}]"))
    }
}

fn read(path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|e| RunError::Config {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_bridge() {
        let c = RuntimeConfig::default();
        c.validate().unwrap();
        assert_eq!(c.control.control_period_s, 0.01);
        assert_eq!(c.policy.policy_period_s, 0.2);
        assert_eq!(c.action.max_step_m, 0.05);
        assert_eq!(c.action.max_step_rad, 0.25);
        assert_eq!(c.workspace.start_xyz_m, [0.3, 0.0, 0.15]);
        assert_eq!(c.episode.max_steps, 120);
    }

    #[test]
    fn printed_config_parses_back_to_itself() {
        let c = RuntimeConfig::default();
        let text = c.to_toml();
        assert!(text.contains("control_period_s = 0.01"), "{text}");
        assert_eq!(RuntimeConfig::from_toml_over(&text, &c).unwrap(), c);
    }

    #[test]
    fn a_file_overrides_a_subset_and_rejects_unknown_keys() {
        let base = RuntimeConfig::default();
        let c =
            RuntimeConfig::from_toml_over("[control]\ncontrol_period_s = 0.02\n", &base).unwrap();
        assert_eq!(c.control.control_period_s, 0.02);
        assert_eq!(c.control.move_time_s, 0.25);
        let err = RuntimeConfig::from_toml_over("[control]\nperiod = 0.02\n", &base).unwrap_err();
        assert!(err.contains("period"), "{err}");
        let err = RuntimeConfig::from_toml_over("[controls]\n", &base).unwrap_err();
        assert!(err.contains("controls"), "{err}");
    }

    #[test]
    fn calibration_then_file_each_win_over_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let calibration = dir.path().join("workspace.toml");
        std::fs::write(
            &calibration,
            "[workspace]\nmin_m = [0.12, -0.1, 0.0]\nmax_m = [0.4, 0.2, 0.2]\nstart_xyz_m = [0.25, 0.0, 0.1]\n",
        )
        .unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "[workspace]\nstart_xyz_m = [0.3, 0.05, 0.1]\n").unwrap();
        let c = RuntimeConfig::load(Some(&file), Some(&calibration)).unwrap();
        assert_eq!(c.workspace.min_m, [0.12, -0.1, 0.0]);
        assert_eq!(c.workspace.start_xyz_m, [0.3, 0.05, 0.1]);
        let missing = dir.path().join("absent.toml");
        let c = RuntimeConfig::load(None, Some(&missing)).unwrap();
        assert_eq!(c, RuntimeConfig::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = RuntimeConfig::default();
        c.workspace.start_xyz_m = [0.6, 0.0, 0.1];
        assert!(c.validate().unwrap_err().contains("start_xyz_m"));
        let mut c = RuntimeConfig::default();
        c.control.control_period_s = 0.0;
        assert!(
            c.validate()
                .unwrap_err()
                .contains("control.control_period_s")
        );
        let mut c = RuntimeConfig::default();
        c.safety.effort_trip_current_ma[2] = f64::NAN;
        assert!(
            c.validate()
                .unwrap_err()
                .contains("effort_trip_current_ma[2]")
        );
        let mut c = RuntimeConfig::default();
        c.workspace.min_m[1] = 0.3;
        assert!(c.validate().unwrap_err().contains("workspace.min_m[1]"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[policy]\nmax_frame_age_s = -1.0\n").unwrap();
        let err = RuntimeConfig::load(Some(&file), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.toml") && err.contains("policy.max_frame_age_s"),
            "{err}"
        );
    }

    #[test]
    fn workspace_box_clamps_and_measures() {
        let w = WorkspaceConfig::default();
        assert_eq!(w.clamp([0.5, 0.0, -0.2]), [0.45, 0.0, -0.01]);
        assert!((w.distance_outside_m([0.5, 0.0, 0.1]) - 0.05).abs() < 1e-12);
        assert_eq!(w.distance_outside_m([0.3, 0.0, 0.1]), 0.0);
    }
}
