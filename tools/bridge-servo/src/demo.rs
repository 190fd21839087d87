//! `bridge-servo demo`: the arm path end to end, as the runtime will use it. Bridge targets
//! (start pose, then a square around it) go through IK to joint goals at 5 Hz, non-blocking, while
//! the joint state is read at 100 Hz; then the gripper closes and opens, and the arm parks.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use widowx::bridge::{POLICY_PERIOD_S, START_XYZ_M, bridge_target_pose, bridge_xyz_rpy};
use widowx::joints::{ARM_JOINTS, SLEEP_POSE_RAD};
use widowx::kinematics::{IkConfig, forward, inverse};
use widowx_driver::Arm;

use crate::commands::Target;

const CONTROL_PERIOD_S: f64 = 0.01;
/// Stock Bridge profile: about 1.25 policy periods per move.
const STEP_MOVE_TIME_S: f64 = 1.25 * POLICY_PERIOD_S;
const LONG_MOVE_TIME_S: f64 = 2.0;

pub fn run(target: &Target, square_m: f64) -> Result<ExitCode> {
    if !(square_m.is_finite() && (0.0..=0.15).contains(&square_m)) {
        bail!("--square-m must be within 0..=0.15 m, got {square_m}");
    }
    let mut arm = target.connect()?;
    let report = arm.ping_all();
    println!("ping: {} servos answered", report.found.len());
    let verify = arm.verify().context("verifying the servo configuration")?;
    println!(
        "verify: {} registers on {} servos, {} differences",
        verify.registers_checked,
        verify.servos_checked,
        verify.diffs.len()
    );
    arm.set_torque(true, None).context("torque on")?;
    let result = drive(&mut arm, square_m);
    // Whatever happened, park and cut torque: never leave the arm holding a raised pose.
    let parked = park(&mut arm);
    result?;
    parked?;
    println!("parked in the sleep pose, torque off");
    Ok(ExitCode::SUCCESS)
}

fn drive(arm: &mut Arm, square_m: f64) -> Result<()> {
    let h = square_m / 2.0;
    let corners = [[h, h], [h, -h], [-h, -h], [-h, h], [0.0, 0.0]];
    let mut joints_rad = present_arm_joints(arm)?;
    joints_rad = move_to(arm, START_XYZ_M, joints_rad, LONG_MOVE_TIME_S)?;
    let mut worst_error_m: f64 = 0.0;
    let mut cycle_times_s = Vec::new();
    for [dx, dy] in corners {
        let goal = [START_XYZ_M[0] + dx, START_XYZ_M[1] + dy, START_XYZ_M[2]];
        // Walk there in Bridge-sized steps (at most 0.05 m per 0.2 s).
        let from = bridge_xyz_rpy(&forward(&joints_rad)).0;
        let distance_m = ((goal[0] - from[0]).powi(2) + (goal[1] - from[1]).powi(2)).sqrt();
        let steps = (distance_m / 0.02).ceil().max(1.0) as usize;
        for step in 1..=steps {
            let f = step as f64 / steps as f64;
            let waypoint = [
                from[0] + f * (goal[0] - from[0]),
                from[1] + f * (goal[1] - from[1]),
                goal[2],
            ];
            joints_rad = command(arm, waypoint, joints_rad, STEP_MOVE_TIME_S)?;
            hold_period(arm, POLICY_PERIOD_S, &mut cycle_times_s)?;
        }
        hold_period(arm, STEP_MOVE_TIME_S, &mut cycle_times_s)?;
        let reached = bridge_xyz_rpy(&forward(&present_arm_joints(arm)?)).0;
        let error_m = (0..3)
            .map(|i| (reached[i] - goal[i]).powi(2))
            .sum::<f64>()
            .sqrt();
        worst_error_m = worst_error_m.max(error_m);
        println!(
            "target x {:.3} y {:.3} z {:.3} m  reached x {:.3} y {:.3} z {:.3} m  error {:.1} mm",
            goal[0],
            goal[1],
            goal[2],
            reached[0],
            reached[1],
            reached[2],
            error_m * 1e3
        );
    }
    arm.gripper_close().context("closing the gripper")?;
    hold_period(arm, 0.5, &mut cycle_times_s)?;
    arm.gripper_open().context("opening the gripper")?;
    hold_period(arm, 0.5, &mut cycle_times_s)?;
    arm.gripper_stop().context("stopping the gripper")?;
    cycle_times_s.sort_by(f64::total_cmp);
    let pct = |p: f64| cycle_times_s[((cycle_times_s.len() - 1) as f64 * p) as usize] * 1e3;
    println!(
        "joint-state reads: {} at {:.0} Hz, p50 {:.2} ms p99 {:.2} ms; worst position error {:.1} mm",
        cycle_times_s.len(),
        1.0 / CONTROL_PERIOD_S,
        pct(0.5),
        pct(0.99),
        worst_error_m * 1e3
    );
    Ok(())
}

/// IK to a Bridge target (gripper down) from `seed`, sent as one goal write; returns the joints.
fn command(
    arm: &mut Arm,
    xyz_m: [f64; 3],
    seed: [f64; ARM_JOINTS],
    move_time_s: f64,
) -> Result<[f64; ARM_JOINTS]> {
    let pose = bridge_target_pose(xyz_m, [0.0; 3]);
    let joints_rad = inverse(&pose, &seed, &IkConfig::default())
        .with_context(|| format!("IK for target {xyz_m:?}"))?;
    arm.write_joint_goals(&joints_rad, move_time_s)?;
    Ok(joints_rad)
}

fn move_to(
    arm: &mut Arm,
    xyz_m: [f64; 3],
    seed: [f64; ARM_JOINTS],
    move_time_s: f64,
) -> Result<[f64; ARM_JOINTS]> {
    let joints_rad = command(arm, xyz_m, seed, move_time_s)?;
    hold_period(arm, move_time_s + 0.2, &mut Vec::new())?;
    Ok(joints_rad)
}

/// Reads the joint state every control period for `duration_s`, recording each read's time.
fn hold_period(arm: &mut Arm, duration_s: f64, cycle_times_s: &mut Vec<f64>) -> Result<()> {
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < duration_s {
        let tick = Instant::now();
        arm.read_joint_state()?;
        cycle_times_s.push(tick.elapsed().as_secs_f64());
        std::thread::sleep(
            Duration::from_secs_f64(CONTROL_PERIOD_S).saturating_sub(tick.elapsed()),
        );
    }
    Ok(())
}

fn present_arm_joints(arm: &mut Arm) -> Result<[f64; ARM_JOINTS]> {
    let state = arm.read_joint_state()?;
    let mut joints_rad = [0.0; ARM_JOINTS];
    joints_rad.copy_from_slice(&state.positions_rad[..ARM_JOINTS]);
    Ok(joints_rad)
}

fn park(arm: &mut Arm) -> Result<()> {
    arm.gripper_stop()
        .context("stopping the gripper before parking")?;
    arm.write_joint_goals(&SLEEP_POSE_RAD, LONG_MOVE_TIME_S)
        .context("moving to the sleep pose")?;
    hold_period(arm, LONG_MOVE_TIME_S + 0.2, &mut Vec::new())?;
    arm.set_torque(false, None)
        .context("torque off after parking")?;
    Ok(())
}
