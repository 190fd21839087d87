//! Evaluation tasks on the tabletop: a start scene and a goal scene (block positions on the
//! table, the gripper's position), success when every block lies within
//! [`SUCCESS_TOLERANCE_M`] of its goal, and the goal image a policy is conditioned on (the goal
//! scene rendered with the arm at the task's `goal_ee_xyz_m`).
//!
//! Tasks come in three [`Tier`]s, told apart by what differs between start and goal:
//! - **T1 reach**: no block moves; the gripper must end within [`ARM_TOLERANCE_M`] of
//!   `goal_ee_xyz_m` with the gripper open or closed as `goal_gripper_open` says, and the blocks
//!   must stay where they are. Far goals (more than [`FAR_REACH_M`] from the start pose) take
//!   several play segments to reach.
//! - **T2 one block**: pick and place one block.
//! - **T3 two blocks**: move two blocks; no play episode moves more than one, so it is
//!   compositional.
//!
//! For T2 and T3 only the blocks are judged; the arm in the goal image is where play episodes
//! leave it ([`crate::tabletop::random_arm_xyz_m`]).
//!
//! Task file (TOML):
//!
//! ```toml
//! # optional; default: red, green, blue 4 cm cubes (BlockSpec::default_set)
//! [[blocks]]
//! name = "red"
//! color_rgb = [205, 38, 38]
//! size_m = 0.04
//!
//! # optional; where the gripper is in goal images (Bridge's reset pose, gripper open)
//! goal_ee_xyz_m = [0.3, 0.0, 0.15]
//! # optional; the task `bridge-run --sim` runs when no goal is given
//! default_task = "red-left"
//!
//! [[task]]
//! name = "red-left"
//! tier = "one-block"   # optional; checked against start and goal when given
//! start = { red = [0.25, -0.05], green = [0.33, 0.12], blue = [0.38, -0.06] }
//! goal = { red = [0.22, 0.16], green = [0.33, 0.12], blue = [0.38, -0.06] }
//!
//! [[task]]
//! name = "reach-far-left"
//! tier = "reach"
//! start = { red = [0.25, -0.05], green = [0.33, 0.12], blue = [0.38, -0.06] }
//! goal = { red = [0.25, -0.05], green = [0.33, 0.12], blue = [0.38, -0.06] }
//! goal_ee_xyz_m = [0.2, 0.18, 0.1]   # required for a reach task
//! goal_gripper_open = true           # optional, default true
//! ```
//!
//! Every block appears in `start` and `goal` of every task, on the table.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use widowx::bridge::bridge_target_pose;
use widowx::kinematics::{IkConfig, inverse};

use crate::render::Renderer;
use crate::tabletop::{ARM_AREA_M, BlockSpec, random_arm_xyz_m, random_block_positions};
use crate::world::{Scene, TABLE_Z_M, World};
use widowx::bridge::START_XYZ_M;

/// A block counts as at its goal within this distance (between centres), m.
pub const SUCCESS_TOLERANCE_M: f64 = 0.03;
/// The gripper servo angle of an open gripper (its open stop), rad.
pub const GRIPPER_OPEN_RAD: f64 = crate::dynamics::GRIPPER_STOPS_RAD.1;
/// The gripper servo angle of a closed, empty gripper (its closed stop), rad.
pub const GRIPPER_CLOSED_RAD: f64 = crate::dynamics::GRIPPER_STOPS_RAD.0;
/// A reach task succeeds with the gripper this close to its goal position (centre of the
/// fingertips), m.
pub const ARM_TOLERANCE_M: f64 = 0.03;
/// A reach goal this far from the start pose or farther is "far", m.
pub const FAR_REACH_M: f64 = 0.15;

/// What a task asks for; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    Reach,
    OneBlock,
    TwoBlocks,
}

impl Tier {
    /// The tier of a task that moves `blocks` blocks.
    pub fn for_moved_blocks(blocks: usize) -> Tier {
        match blocks {
            0 => Tier::Reach,
            1 => Tier::OneBlock,
            _ => Tier::TwoBlocks,
        }
    }

    /// "T1 reach", "T2 one block", "T3 two blocks".
    pub fn label(self) -> &'static str {
        match self {
            Tier::Reach => "T1 reach",
            Tier::OneBlock => "T2 one block",
            Tier::TwoBlocks => "T3 two blocks",
        }
    }
}
/// A seed for the IK of rest poses (the Bridge neutral pose).
const REST_IK_SEED_RAD: [f64; 6] = widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;

/// Why a task file or task is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{origin}: task `{task}`: {reason}")]
    Invalid {
        origin: String,
        task: String,
        reason: String,
    },
    #[error("{origin}: goal_ee_xyz_m {xyz_m:?} is out of the arm's reach: {reason}")]
    Unreachable {
        origin: String,
        xyz_m: [f64; 3],
        reason: String,
    },
}

/// One task: where the blocks start and where they should end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    /// Written by the generator for readers; when given it must match start and goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Block name -> (x, y) on the table at the start, m.
    pub start: BTreeMap<String, [f64; 2]>,
    /// Block name -> (x, y) on the table at the goal, m.
    pub goal: BTreeMap<String, [f64; 2]>,
    /// Where the gripper is in this task's goal image; default: the file's `goal_ee_xyz_m`.
    /// Required for a reach task, where it is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_ee_xyz_m: Option<[f64; 3]>,
    /// Whether the gripper is open in the goal image (default true); judged for a reach task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_gripper_open: Option<bool>,
}

/// How far one block ended from its goal.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockOutcome {
    pub name: String,
    pub distance_m: f64,
    pub at_goal: bool,
}

impl Outcome {
    /// What the simulator judged, in words: "gripper 1.2 cm from its goal position; red 0.8 cm
    /// from its goal" with the tolerances named where something is outside them.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(error_m) = self.arm_error_m {
            parts.push(format!(
                "gripper {:.1} cm from its goal position{}",
                error_m * 100.0,
                if error_m > ARM_TOLERANCE_M {
                    format!(" (more than {:.0} cm)", ARM_TOLERANCE_M * 100.0)
                } else {
                    String::new()
                }
            ));
        }
        if self.gripper_matches == Some(false) {
            parts.push("gripper open/closed unlike the goal image".into());
        }
        for block in &self.blocks {
            parts.push(format!(
                "{} {:.1} cm from its goal{}",
                block.name,
                block.distance_m * 100.0,
                if block.at_goal {
                    String::new()
                } else {
                    format!(" (more than {:.0} cm)", SUCCESS_TOLERANCE_M * 100.0)
                }
            ));
        }
        parts.join("; ")
    }
}

/// Whether a scene meets a task's goal.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub blocks: Vec<BlockOutcome>,
    /// For a reach task: how far the gripper ended from its goal position, m.
    pub arm_error_m: Option<f64>,
    /// For a reach task: whether the gripper ended open or closed as the goal shows it.
    pub gripper_matches: Option<bool>,
}

impl TaskSpec {
    /// Start positions in the order of `blocks`.
    pub fn start_positions(&self, blocks: &[BlockSpec]) -> Vec<[f64; 2]> {
        positions_in_order(&self.start, blocks)
    }

    /// Goal positions in the order of `blocks`.
    pub fn goal_positions(&self, blocks: &[BlockSpec]) -> Vec<[f64; 2]> {
        positions_in_order(&self.goal, blocks)
    }

    /// The task's tier, from what differs between start and goal.
    pub fn tier(&self) -> Tier {
        Tier::for_moved_blocks(self.moved_blocks().len())
    }

    /// Whether the gripper is open in the goal image.
    pub fn gripper_open_at_goal(&self) -> bool {
        self.goal_gripper_open.unwrap_or(true)
    }

    /// Names of the blocks that must move (goal farther than the tolerance from the start).
    pub fn moved_blocks(&self) -> Vec<&str> {
        self.goal
            .iter()
            .filter(|(name, goal)| {
                self.start
                    .get(*name)
                    .is_none_or(|start| distance_2d(start, goal) > SUCCESS_TOLERANCE_M)
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every block of `scene` within [`SUCCESS_TOLERANCE_M`] of its goal (resting on the table
    /// there: a block held above its goal is not at it). A block the task does not name fails.
    pub fn outcome(&self, scene: &Scene) -> Outcome {
        let blocks: Vec<BlockOutcome> = scene
            .blocks
            .iter()
            .map(|block| {
                let distance_m = self.goal.get(&block.name).map_or(f64::INFINITY, |goal| {
                    let target = [goal[0], goal[1], TABLE_Z_M + block.size_m / 2.0];
                    (0..3)
                        .map(|i| (block.position_m[i] - target[i]).powi(2))
                        .sum::<f64>()
                        .sqrt()
                });
                BlockOutcome {
                    name: block.name.clone(),
                    distance_m,
                    at_goal: distance_m <= SUCCESS_TOLERANCE_M,
                }
            })
            .collect();
        let (arm_error_m, gripper_matches) = match (self.tier(), self.goal_ee_xyz_m) {
            (Tier::Reach, Some(goal)) => {
                let at = scene.ee_pose().position_m;
                let error_m = (0..3)
                    .map(|i| (at[i] - goal[i]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let open = widowx::bridge::open_fraction_of_finger_m(scene.finger_position_m())
                    >= widowx::bridge::GRIPPER_CLOSE_BELOW;
                (Some(error_m), Some(open == self.gripper_open_at_goal()))
            }
            _ => (None, None),
        };
        let arm_ok = arm_error_m.is_none_or(|e| e <= ARM_TOLERANCE_M);
        Outcome {
            success: blocks.iter().all(|b| b.at_goal) && arm_ok && gripper_matches != Some(false),
            blocks,
            arm_error_m,
            gripper_matches,
        }
    }

    fn check(&self, blocks: &[BlockSpec], origin: &str) -> Result<(), TaskError> {
        let fail = |reason: String| TaskError::Invalid {
            origin: origin.to_string(),
            task: self.name.clone(),
            reason,
        };
        for (field, positions) in [("start", &self.start), ("goal", &self.goal)] {
            for name in positions.keys() {
                if !blocks.iter().any(|b| &b.name == name) {
                    return Err(fail(format!(
                        "{field} names block `{name}`, which the file does not define (blocks: {})",
                        block_names(blocks)
                    )));
                }
            }
            for block in blocks {
                let Some(xy) = positions.get(&block.name) else {
                    return Err(fail(format!(
                        "{field} has no position for block `{}`",
                        block.name
                    )));
                };
                let mut world = World::new(vec![block.on_table([0.3, 0.0])], [0.0; 7]);
                world
                    .place_blocks(&[*xy])
                    .map_err(|e| fail(format!("{field}: {e}")))?;
            }
        }
        if let Some(tier) = self.tier
            && tier != self.tier()
        {
            return Err(fail(format!(
                "tier is `{tier:?}`, but start and goal make it `{:?}` ({} blocks move)",
                self.tier(),
                self.moved_blocks().len()
            )));
        }
        if self.tier() == Tier::Reach && self.goal_ee_xyz_m.is_none() {
            return Err(fail(
                "a reach task (no block moves) needs goal_ee_xyz_m, the gripper position to reach"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn positions_in_order(
    positions: &BTreeMap<String, [f64; 2]>,
    blocks: &[BlockSpec],
) -> Vec<[f64; 2]> {
    blocks
        .iter()
        .filter_map(|b| positions.get(&b.name).copied())
        .collect()
}

fn block_names(blocks: &[BlockSpec]) -> String {
    blocks
        .iter()
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn distance_2d(a: &[f64; 2], b: &[f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFileToml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocks: Option<Vec<BlockSpecToml>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    goal_ee_xyz_m: Option<[f64; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_task: Option<String>,
    #[serde(default, rename = "task")]
    tasks: Vec<TaskSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockSpecToml {
    name: String,
    color_rgb: [u8; 3],
    size_m: f64,
}

/// A list of tasks over one set of blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFile {
    pub blocks: Vec<BlockSpec>,
    /// Where the gripper is in goal images unless a task says otherwise.
    pub goal_ee_xyz_m: [f64; 3],
    /// The task `bridge-run --sim` runs when no goal is given (one the shipped checkpoint
    /// reaches reliably).
    pub default_task: Option<String>,
    pub tasks: Vec<TaskSpec>,
}

impl TaskFile {
    /// Reads and checks a task file.
    pub fn load(path: &Path) -> Result<TaskFile, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|e| TaskError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        TaskFile::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and checks task TOML; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<TaskFile, TaskError> {
        let parsed: TaskFileToml = toml::from_str(text).map_err(|e| TaskError::File {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        let blocks = match parsed.blocks {
            Some(blocks) => blocks
                .into_iter()
                .map(|b| BlockSpec::new(&b.name, b.color_rgb, b.size_m))
                .collect(),
            None => BlockSpec::default_set(),
        };
        let file = TaskFile {
            blocks,
            goal_ee_xyz_m: parsed.goal_ee_xyz_m.unwrap_or(START_XYZ_M),
            default_task: parsed.default_task,
            tasks: parsed.tasks,
        };
        file.check(origin)?;
        Ok(file)
    }

    fn check(&self, origin: &str) -> Result<(), TaskError> {
        crate::tabletop::TabletopConfig {
            blocks: self.blocks.clone(),
            block_positions_m: Vec::new(),
            seed: 0,
            jitter: false,
        }
        .start_blocks()
        .map_err(|e| TaskError::File {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        for (i, task) in self.tasks.iter().enumerate() {
            if self.tasks[..i].iter().any(|t| t.name == task.name) {
                return Err(TaskError::Invalid {
                    origin: origin.to_string(),
                    task: task.name.clone(),
                    reason: "the name is used twice".into(),
                });
            }
            task.check(&self.blocks, origin)?;
            rest_joints_rad(task.goal_ee_xyz_m.unwrap_or(self.goal_ee_xyz_m), origin)?;
        }
        rest_joints_rad(self.goal_ee_xyz_m, origin)?;
        if let Some(name) = &self.default_task
            && self.task(name).is_none()
        {
            return Err(TaskError::File {
                path: origin.to_string(),
                reason: format!("default_task `{name}` is not one of the file's tasks"),
            });
        }
        Ok(())
    }

    /// The file as TOML (every field written out), parseable by [`TaskFile::from_toml_str`].
    pub fn to_toml_string(&self) -> Result<String, TaskError> {
        let file = TaskFileToml {
            blocks: Some(
                self.blocks
                    .iter()
                    .map(|b| BlockSpecToml {
                        name: b.name.clone(),
                        color_rgb: b.color_rgb,
                        size_m: b.size_m,
                    })
                    .collect(),
            ),
            goal_ee_xyz_m: Some(self.goal_ee_xyz_m),
            default_task: self.default_task.clone(),
            tasks: self.tasks.clone(),
        };
        toml::to_string(&file).map_err(|e| TaskError::File {
            path: "(serialising)".into(),
            reason: e.to_string(),
        })
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The arm's joints in `task`'s goal image: gripper pointing down at its `goal_ee_xyz_m`,
    /// open unless the task says otherwise.
    pub fn goal_joints_rad(&self, task: &TaskSpec) -> Result<[f64; 7], TaskError> {
        let mut joints =
            rest_joints_rad(task.goal_ee_xyz_m.unwrap_or(self.goal_ee_xyz_m), &task.name)?;
        if !task.gripper_open_at_goal() {
            joints[6] = GRIPPER_CLOSED_RAD;
        }
        Ok(joints)
    }

    /// `task`'s goal scene: blocks at their goals, the arm at [`TaskFile::goal_joints_rad`].
    pub fn goal_scene(&self, task: &TaskSpec) -> Result<Scene, TaskError> {
        Ok(Scene {
            joints_rad: self.goal_joints_rad(task)?,
            blocks: self
                .blocks
                .iter()
                .zip(task.goal_positions(&self.blocks))
                .map(|(spec, xy)| spec.on_table(xy))
                .collect(),
        })
    }

    /// `task`'s start scene: blocks at their starts, the arm at the evaluation start pose
    /// (Bridge's reset pose), open.
    pub fn start_scene(&self, task: &TaskSpec) -> Result<Scene, TaskError> {
        Ok(Scene {
            joints_rad: rest_joints_rad(START_XYZ_M, &task.name)?,
            blocks: self
                .blocks
                .iter()
                .zip(task.start_positions(&self.blocks))
                .map(|(spec, xy)| spec.on_table(xy))
                .collect(),
        })
    }

    /// The goal image of `task` (RGB, the renderer's size).
    pub fn render_goal(
        &self,
        task: &TaskSpec,
        renderer: &mut Renderer,
    ) -> Result<Vec<u8>, TaskError> {
        Ok(renderer.render_to_vec(&self.goal_scene(task)?))
    }

    /// Random tasks over `blocks`, `counts` of each tier, each from a random start;
    /// deterministic for `seed`. Every goal image shows the arm at a pose drawn by
    /// [`random_arm_xyz_m`] (where play episodes pause and end). Reach goals are
    /// near (under [`FAR_REACH_M`] from the start pose; the first one) and far (the others); block goals are at least
    /// [`crate::tabletop::MIN_BLOCK_SPACING_M`] from every other block and at least 8 cm from where the moved
    /// block started.
    pub fn generate(blocks: Vec<BlockSpec>, seed: u64, counts: TierCounts) -> TaskFile {
        let mut rng = StdRng::seed_from_u64(seed);
        let plan = std::iter::repeat_n(0, counts.reach)
            .chain(std::iter::repeat_n(1, counts.one_block))
            .chain(std::iter::repeat_n(2, counts.two_blocks));
        let tasks = plan
            .enumerate()
            .map(|(index, moved)| random_task(&blocks, index, moved.min(blocks.len()), &mut rng))
            .collect();
        TaskFile {
            blocks,
            goal_ee_xyz_m: START_XYZ_M,
            default_task: None,
            tasks,
        }
    }
}

/// How many tasks of each tier [`TaskFile::generate`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierCounts {
    pub reach: usize,
    pub one_block: usize,
    pub two_blocks: usize,
}

fn random_task(blocks: &[BlockSpec], index: usize, moved: usize, rng: &mut StdRng) -> TaskSpec {
    let start = random_block_positions(blocks, rng);
    let mut goal = start.clone();
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    for i in 0..order.len() {
        let j = rng.random_range(i..order.len());
        order.swap(i, j);
    }
    for &block in &order[..moved] {
        goal[block] = free_spot(&goal, &start[block], block, rng);
    }
    let round_mm = |v: f64| (v * 1000.0).round() / 1000.0;
    let to_map = |positions: &[[f64; 2]]| {
        blocks
            .iter()
            .zip(positions)
            .map(|(b, xy)| (b.name.clone(), xy.map(round_mm)))
            .collect()
    };
    let (goal_ee_xyz_m, label) = if moved == 0 {
        // The first reach task is near, the others far.
        let far = index > 0;
        let xyz = reach_goal_xyz_m(far, rng);
        (xyz, format!("reach-{}", if far { "far" } else { "near" }))
    } else {
        let names: Vec<&str> = order[..moved]
            .iter()
            .map(|&b| blocks[b].name.as_str())
            .collect();
        (random_arm_xyz_m(rng), names.join("-"))
    };
    TaskSpec {
        name: format!("{index:02}-{label}"),
        tier: Some(Tier::for_moved_blocks(moved)),
        start: to_map(&start),
        goal: to_map(&goal),
        goal_ee_xyz_m: Some(goal_ee_xyz_m.map(round_mm)),
        goal_gripper_open: None,
    }
}

/// A reach goal in [`ARM_AREA_M`]: far ones at least [`FAR_REACH_M`] from the start pose,
/// near ones between 6 cm and [`FAR_REACH_M`] from it.
fn reach_goal_xyz_m(far: bool, rng: &mut StdRng) -> [f64; 3] {
    let (min, max) = ARM_AREA_M;
    let mut best = START_XYZ_M;
    for _ in 0..1000 {
        let candidate: [f64; 3] =
            std::array::from_fn(|axis| rng.random_range(min[axis]..max[axis]));
        let d = (0..3)
            .map(|i| (candidate[i] - START_XYZ_M[i]).powi(2))
            .sum::<f64>()
            .sqrt();
        best = candidate;
        if (far && d >= FAR_REACH_M) || (!far && (0.06..FAR_REACH_M).contains(&d)) {
            break;
        }
    }
    best
}

/// A spot in the block area clear of every other block and away from `from`.
fn free_spot(positions: &[[f64; 2]], from: &[f64; 2], moving: usize, rng: &mut StdRng) -> [f64; 2] {
    let occupied: Vec<[f64; 2]> = positions
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != moving)
        .map(|(_, p)| *p)
        .chain(std::iter::once(*from))
        .collect();
    crate::tabletop::free_spot(&occupied, 500, rng)
}

/// Joints with the gripper pointing down at `xyz_m`, open.
fn rest_joints_rad(xyz_m: [f64; 3], origin: &str) -> Result<[f64; 7], TaskError> {
    let arm = inverse(
        &bridge_target_pose(xyz_m, [0.0; 3]),
        &REST_IK_SEED_RAD,
        &IkConfig::default(),
    )
    .map_err(|e| TaskError::Unreachable {
        origin: origin.to_string(),
        xyz_m,
        reason: e.to_string(),
    })?;
    let mut joints = [0.0; 7];
    joints[..6].copy_from_slice(&arm);
    joints[6] = GRIPPER_OPEN_RAD;
    Ok(joints)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
goal_ee_xyz_m = [0.3, 0.0, 0.15]
[[task]]
name = "red-left"
start = { red = [0.25, -0.05], green = [0.33, 0.12], blue = [0.38, -0.06] }
goal = { red = [0.22, 0.16], green = [0.33, 0.12], blue = [0.38, -0.06] }
"#;

    #[test]
    fn parses_and_judges_success_within_three_centimetres() {
        let file = TaskFile::from_toml_str(FILE, "t.toml").unwrap();
        let task = file.task("red-left").unwrap();
        assert_eq!(task.moved_blocks(), vec!["red"]);
        let mut scene = file.goal_scene(task).unwrap();
        assert!(task.outcome(&scene).success);
        scene.blocks[0].position_m[0] += 0.025;
        assert!(task.outcome(&scene).success);
        scene.blocks[0].position_m[0] += 0.01;
        let outcome = task.outcome(&scene);
        assert!(!outcome.success);
        assert!((outcome.blocks[0].distance_m - 0.035).abs() < 1e-9);
        // Held right above the goal is not at the goal.
        let mut lifted = file.goal_scene(task).unwrap();
        lifted.blocks[0].position_m[2] += 0.05;
        assert!(!task.outcome(&lifted).success);
    }

    #[test]
    fn errors_name_the_task_and_block() {
        let missing = FILE.replace(", blue = [0.38, -0.06] }\ngoal", " }\ngoal");
        let error = TaskFile::from_toml_str(&missing, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("red-left") && error.contains("blue") && error.contains("start"),
            "{error}"
        );
        let unknown = FILE.replace("red = [0.22", "pink = [0.1, 0.1], red = [0.22");
        let error = TaskFile::from_toml_str(&unknown, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("pink"), "{error}");
        let off_table = FILE.replace("[0.22, 0.16]", "[3.0, 0.16]");
        let error = TaskFile::from_toml_str(&off_table, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("off the table"), "{error}");
        let far = FILE.replace("[0.3, 0.0, 0.15]", "[1.5, 0.0, 0.15]");
        assert!(matches!(
            TaskFile::from_toml_str(&far, "t.toml"),
            Err(TaskError::Unreachable { .. })
        ));
    }

    const COUNTS: TierCounts = TierCounts {
        reach: 3,
        one_block: 3,
        two_blocks: 2,
    };

    #[test]
    fn generated_tasks_round_trip_and_move_the_right_number_of_blocks() {
        let file = TaskFile::generate(BlockSpec::default_set(), 7, COUNTS);
        assert_eq!(file.tasks.len(), 8);
        for (i, task) in file.tasks.iter().enumerate() {
            let (moved, tier) = match i {
                0..3 => (0, Tier::Reach),
                3..6 => (1, Tier::OneBlock),
                _ => (2, Tier::TwoBlocks),
            };
            assert_eq!(task.moved_blocks().len(), moved, "{task:?}");
            assert_eq!((task.tier(), task.tier), (tier, Some(tier)), "{task:?}");
        }
        let text = file.to_toml_string().unwrap();
        let back = TaskFile::from_toml_str(&text, "generated").unwrap();
        assert_eq!(back, file);
        assert_eq!(
            TaskFile::generate(BlockSpec::default_set(), 7, COUNTS),
            file
        );
    }

    #[test]
    fn reach_goals_are_near_then_far_and_judge_the_gripper() {
        let file = TaskFile::generate(BlockSpec::default_set(), 11, COUNTS);
        let from_start = |task: &TaskSpec| {
            let goal = task.goal_ee_xyz_m.unwrap();
            (0..3)
                .map(|i| (goal[i] - START_XYZ_M[i]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        assert!(from_start(&file.tasks[0]) < FAR_REACH_M);
        assert!(from_start(&file.tasks[1]) >= FAR_REACH_M);
        assert!(from_start(&file.tasks[2]) >= FAR_REACH_M);
        let task = &file.tasks[1];
        // The goal scene itself meets the goal: the arm is there, open, blocks unmoved.
        let at_goal = file.goal_scene(task).unwrap();
        let outcome = task.outcome(&at_goal);
        assert!(outcome.success, "{outcome:?}");
        assert!(outcome.arm_error_m.unwrap() < 1e-3);
        // The start pose is far from it: a failure, though every block is in place.
        let mut at_start = at_goal.clone();
        at_start.joints_rad = rest_joints_rad(START_XYZ_M, "test").unwrap();
        let outcome = task.outcome(&at_start);
        assert!(!outcome.success && outcome.blocks.iter().all(|b| b.at_goal));
        // At the goal with the gripper closed instead of open: a failure.
        let mut closed = at_goal.clone();
        closed.joints_rad[6] = GRIPPER_CLOSED_RAD;
        assert_eq!(task.outcome(&closed).gripper_matches, Some(false));
        assert!(!task.outcome(&closed).success);
    }

    #[test]
    fn a_wrong_tier_or_a_reach_without_a_goal_pose_is_refused() {
        let wrong = FILE.replace(
            "name = \"red-left\"",
            "name = \"red-left\"\ntier = \"reach\"",
        );
        let error = TaskFile::from_toml_str(&wrong, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tier") && error.contains("OneBlock"),
            "{error}"
        );
        let no_pose = FILE.replace("[0.22, 0.16]", "[0.25, -0.05]");
        let error = TaskFile::from_toml_str(&no_pose, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("goal_ee_xyz_m"), "{error}");
    }
}
