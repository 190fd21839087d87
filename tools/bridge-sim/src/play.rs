//! The scripted, noisy play policy of `bridge-sim collect`: at each 5 Hz step it looks at the
//! true scene (privileged: block positions, whether one is held) and the previously commanded
//! target pose, and returns a Bridge action `[dx, dy, dz, droll, dpitch, dyaw, gripper]`.
//!
//! Each episode draws one behaviour: a pick-and-place (reach above a block, descend, close,
//! lift, carry, lower, open, retreat, then wander), a reach (approach a block and hover), a
//! grasp-and-lift that puts the block back down where it was, or plain wandering. So an episode
//! shows at most one pick-and-place, as in BridgeData V2's short episodes. Speeds, heights,
//! offsets and the noise on every delta are drawn per episode and per step from a seeded
//! generator.
//!
//! Wandering goes to gripper positions drawn by [`random_arm_xyz_m`], the distribution the
//! evaluation goals are drawn from (often back at rest), and an episode that has finished its
//! behaviour spends its last [`SETTLE_STEPS`] steps going to one more such position and holding
//! still there. So the poses goal images show are poses the data reaches and stays at.

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;
use widowx::bridge::BridgeAction;
use widowx_sim::tabletop::{free_spot, random_arm_xyz_m};
use widowx_sim::world::Scene;

/// Steps at the end of an episode spent going to a last pose and holding still there (when the
/// behaviour is over by then).
pub const SETTLE_STEPS: usize = 8;
/// Steps the gripper may take to close on a block before the grasp counts as missed.
const CLOSE_STEPS: usize = 6;
/// Steps spent opening the gripper to let go.
const OPEN_STEPS: usize = 2;
/// A move is over when the arm (not just the command) is this much beyond its tolerance, m.
const CATCH_UP_M: f64 = 0.008;

/// Which kind of episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    PickPlace,
    Reach,
    LiftAndReturn,
    Wander,
}

/// One stretch of an episode.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Move the commanded gripper position to a point (an offset from a block when given).
    Move {
        target: Target,
        open: bool,
        tolerance_m: f64,
    },
    /// Hold still with the gripper closing until the block is held.
    Close { block: usize },
    /// Hold still with the gripper opening.
    Open,
    /// Random waypoints until the episode ends.
    Wander { waypoint_m: [f64; 3] },
    /// Go to a point and stay there until the episode ends.
    Settle { point_m: [f64; 3] },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Point([f64; 3]),
    /// A block's current position plus an offset (x, y) at an absolute height.
    AboveBlock {
        block: usize,
        offset_m: [f64; 2],
        z_m: f64,
    },
}

/// What the policy sees each step.
#[derive(Debug, Clone, Copy)]
pub struct PlayObservation<'a> {
    pub scene: &'a Scene,
    /// The previously commanded gripper position and Bridge roll-pitch-yaw.
    pub target_xyz_m: [f64; 3],
    pub target_rpy_rad: [f64; 3],
}

/// The policy of one episode.
#[derive(Debug)]
pub struct PlayPolicy {
    rng: StdRng,
    behaviour: Behaviour,
    description: String,
    phases: Vec<Phase>,
    /// The block to move and where to, for a pick-and-place.
    place: Option<(usize, [f64; 2])>,
    current: usize,
    steps_in_phase: usize,
    gripper_open: bool,
    speed_m: f64,
    yaw_goal_rad: f64,
    /// Actions taken so far, and from which one the episode settles.
    steps_taken: usize,
    settle_from_step: usize,
}

impl PlayPolicy {
    /// Draws a behaviour for `scene` and plans it, for an episode of `steps` actions.
    pub fn new(scene: &Scene, mut rng: StdRng, steps: usize) -> PlayPolicy {
        let draw: f64 = rng.random_range(0.0..1.0);
        let behaviour = match draw {
            _ if scene.blocks.is_empty() => Behaviour::Wander,
            p if p < 0.6 => Behaviour::PickPlace,
            p if p < 0.75 => Behaviour::Reach,
            p if p < 0.85 => Behaviour::LiftAndReturn,
            _ => Behaviour::Wander,
        };
        let mut policy = PlayPolicy {
            speed_m: rng.random_range(0.025..0.05),
            yaw_goal_rad: rng.random_range(-0.4..0.4),
            rng,
            behaviour,
            description: String::new(),
            phases: Vec::new(),
            place: None,
            current: 0,
            steps_in_phase: 0,
            gripper_open: true,
            steps_taken: 0,
            settle_from_step: steps.saturating_sub(SETTLE_STEPS),
        };
        policy.plan(scene);
        policy
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// For a pick-and-place: the block (index) and where it should end up (x, y), m.
    pub fn place_target(&self) -> Option<(usize, [f64; 2])> {
        self.place
    }

    /// Whether the episode is in its last stretch: going to its final pose and staying there.
    #[cfg(test)]
    pub fn settling(&self) -> bool {
        matches!(self.phases[self.current], Phase::Settle { .. })
    }

    /// What the episode does, in words (written to `lang.txt`).
    pub fn description(&self) -> &str {
        &self.description
    }

    fn plan(&mut self, scene: &Scene) {
        let block = self.rng.random_range(0..scene.blocks.len().max(1));
        let wander = Phase::Wander {
            waypoint_m: self.wander_point(),
        };
        self.phases = match self.behaviour {
            Behaviour::Wander => {
                self.description = "move around above the table".into();
                vec![wander]
            }
            Behaviour::Reach => {
                let name = &scene.blocks[block].name;
                self.description = format!("reach toward the {name} block");
                let hover_m = self.rng.random_range(0.05..0.09);
                let approach_m = self.rng.random_range(0.09..0.14);
                vec![
                    self.above(block, approach_m, 0.01),
                    self.above(block, hover_m, 0.01),
                    wander,
                ]
            }
            Behaviour::PickPlace | Behaviour::LiftAndReturn => {
                let start = scene.blocks[block].position_m;
                let place = if self.behaviour == Behaviour::PickPlace {
                    self.free_spot(scene)
                } else {
                    [start[0], start[1]]
                };
                let name = &scene.blocks[block].name;
                if self.behaviour == Behaviour::PickPlace {
                    self.place = Some((block, place));
                }
                self.description = if self.behaviour == Behaviour::PickPlace {
                    format!("put the {name} block at ({:.2}, {:.2})", place[0], place[1])
                } else {
                    format!("lift the {name} block and put it back")
                };
                self.pick_and_place(scene, block, place, wander)
            }
        };
    }

    fn pick_and_place(
        &mut self,
        scene: &Scene,
        block: usize,
        place: [f64; 2],
        wander: Phase,
    ) -> Vec<Phase> {
        let half = scene.blocks[block].size_m / 2.0;
        let carry_z = self.rng.random_range(0.09..0.15);
        let release_z = half + self.rng.random_range(0.004..0.03);
        let grasp_z = half + self.rng.random_range(-0.004..0.006);
        let jitter = |rng: &mut StdRng, m: f64| [rng.random_range(-m..m), rng.random_range(-m..m)];
        let grasp_offset = jitter(&mut self.rng, 0.004);
        let place = [
            place[0] + self.rng.random_range(-0.005..0.005),
            place[1] + self.rng.random_range(-0.005..0.005),
        ];
        let point = |xy: [f64; 2], z: f64| Target::Point([xy[0], xy[1], z]);
        let approach_m = self.rng.random_range(0.08..0.14);
        vec![
            self.above(block, approach_m, 0.012),
            Phase::Move {
                target: Target::AboveBlock {
                    block,
                    offset_m: grasp_offset,
                    z_m: grasp_z,
                },
                open: true,
                tolerance_m: 0.005,
            },
            Phase::Close { block },
            Phase::Move {
                target: Target::AboveBlock {
                    block,
                    offset_m: [0.0, 0.0],
                    z_m: carry_z,
                },
                open: false,
                tolerance_m: 0.015,
            },
            Phase::Move {
                target: point(place, carry_z),
                open: false,
                tolerance_m: 0.012,
            },
            Phase::Move {
                target: point(place, release_z),
                open: false,
                tolerance_m: 0.006,
            },
            Phase::Open,
            Phase::Move {
                target: point(place, self.rng.random_range(0.1..0.16)),
                open: true,
                tolerance_m: 0.02,
            },
            wander,
        ]
    }

    fn above(&mut self, block: usize, z_m: f64, jitter_m: f64) -> Phase {
        Phase::Move {
            target: Target::AboveBlock {
                block,
                offset_m: [
                    self.rng.random_range(-jitter_m..jitter_m),
                    self.rng.random_range(-jitter_m..jitter_m),
                ],
                z_m,
            },
            open: true,
            tolerance_m: 0.012,
        }
    }

    fn wander_point(&mut self) -> [f64; 3] {
        random_arm_xyz_m(&mut self.rng)
    }

    /// A place on the table away from every block.
    fn free_spot(&mut self, scene: &Scene) -> [f64; 2] {
        let occupied: Vec<[f64; 2]> = scene
            .blocks
            .iter()
            .map(|b| [b.position_m[0], b.position_m[1]])
            .collect();
        free_spot(&occupied, 300, &mut self.rng)
    }

    /// The action for this step.
    pub fn act(&mut self, observation: &PlayObservation<'_>) -> BridgeAction {
        self.settle_when_due();
        self.steps_taken += 1;
        // Bounded: a fresh wander waypoint could, very rarely, be reached already.
        for _ in 0..8 {
            if !self.phase_done(observation) {
                break;
            }
            self.advance(observation);
        }
        self.steps_in_phase += 1;
        let phase = self.phases[self.current];
        let goal_m = match phase {
            Phase::Move { target, .. } => self.resolve(target, observation.scene),
            Phase::Wander { waypoint_m } => waypoint_m,
            Phase::Settle { point_m } => point_m,
            Phase::Close { .. } | Phase::Open => observation.target_xyz_m,
        };
        match phase {
            Phase::Move { open, .. } => self.gripper_open = open,
            Phase::Close { .. } => self.gripper_open = false,
            Phase::Open => self.gripper_open = true,
            Phase::Wander { .. } | Phase::Settle { .. } => {}
        }
        BridgeAction {
            translation_m: self.translation_toward(observation.target_xyz_m, goal_m),
            rotation_rad: self.rotation(observation.target_rpy_rad),
            gripper: if self.gripper_open { 1.0 } else { 0.0 },
        }
    }

    /// In the last [`SETTLE_STEPS`] steps, an episode that is wandering (its behaviour done)
    /// goes to one more pose and stays there.
    fn settle_when_due(&mut self) {
        let wandering = matches!(self.phases[self.current], Phase::Wander { .. });
        if self.steps_taken >= self.settle_from_step && wandering {
            let point_m = self.wander_point();
            self.phases[self.current] = Phase::Settle { point_m };
            self.steps_in_phase = 0;
        }
    }

    fn resolve(&self, target: Target, scene: &Scene) -> [f64; 3] {
        match target {
            Target::Point(point) => point,
            Target::AboveBlock {
                block,
                offset_m,
                z_m,
            } => {
                let p = scene.blocks[block].position_m;
                [p[0] + offset_m[0], p[1] + offset_m[1], z_m]
            }
        }
    }

    fn phase_done(&self, observation: &PlayObservation<'_>) -> bool {
        match self.phases[self.current] {
            Phase::Move {
                target,
                tolerance_m,
                ..
            } => {
                // The commanded pose is there, and the arm has caught up with it.
                let goal = self.resolve(target, observation.scene);
                let measured = observation.scene.ee_pose().position_m;
                distance(&observation.target_xyz_m, &goal) < tolerance_m
                    && distance(&measured, &goal) < tolerance_m + CATCH_UP_M
            }
            Phase::Close { block } => {
                observation.scene.blocks[block].held || self.steps_in_phase >= CLOSE_STEPS
            }
            Phase::Open => self.steps_in_phase >= OPEN_STEPS,
            Phase::Wander { waypoint_m } => {
                distance(&observation.target_xyz_m, &waypoint_m) < 0.015
            }
            Phase::Settle { .. } => false,
        }
    }

    fn advance(&mut self, observation: &PlayObservation<'_>) {
        let missed = matches!(self.phases[self.current], Phase::Close { block } if !observation.scene.blocks[block].held);
        self.steps_in_phase = 0;
        if missed {
            // The grasp failed: let go, back off and wander for the rest of the episode.
            let up = [
                observation.target_xyz_m[0],
                observation.target_xyz_m[1],
                0.12,
            ];
            self.phases.truncate(self.current + 1);
            self.phases.push(Phase::Open);
            self.phases.push(Phase::Move {
                target: Target::Point(up),
                open: true,
                tolerance_m: 0.02,
            });
            let waypoint_m = self.wander_point();
            self.phases.push(Phase::Wander { waypoint_m });
            self.description.push_str(" (missed the grasp)");
        }
        if let Phase::Wander { .. } = self.phases[self.current] {
            self.phases[self.current] = Phase::Wander {
                waypoint_m: self.wander_point(),
            };
            if self.behaviour == Behaviour::Wander && self.rng.random_bool(0.2) {
                self.gripper_open = !self.gripper_open;
            }
            if self.rng.random_bool(0.3) {
                self.yaw_goal_rad = self.rng.random_range(-0.4..0.4);
            }
            return;
        }
        self.current = (self.current + 1).min(self.phases.len() - 1);
    }

    /// A step toward `goal` at the episode's speed, with noise that shrinks near the goal.
    fn translation_toward(&mut self, from: [f64; 3], goal: [f64; 3]) -> [f64; 3] {
        let error = [goal[0] - from[0], goal[1] - from[1], goal[2] - from[2]];
        let length = distance(&from, &goal);
        let scale = if length > self.speed_m {
            self.speed_m / length
        } else {
            1.0
        };
        let sigma_m = 0.001 + 0.004 * (length / 0.1).min(1.0);
        std::array::from_fn(|axis| error[axis] * scale + sigma_m * self.gaussian())
    }

    /// Roll and pitch pulled back toward zero, yaw toward the episode's goal, with noise.
    fn rotation(&mut self, rpy: [f64; 3]) -> [f64; 3] {
        const SIGMA_RAD: f64 = 0.01;
        let yaw_step = (self.yaw_goal_rad - rpy[2]).clamp(-0.08, 0.08);
        [
            -0.5 * rpy[0] + SIGMA_RAD * self.gaussian(),
            -0.5 * rpy[1] + SIGMA_RAD * self.gaussian(),
            yaw_step + SIGMA_RAD * self.gaussian(),
        ]
    }

    fn gaussian(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }
}

fn distance(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// Runs a policy on an empty table (it wanders), moving the commanded target by each
    /// action; returns the commanded positions after each step.
    fn commanded_path(policy: &mut PlayPolicy, steps: usize) -> Vec<[f64; 3]> {
        let scene = Scene {
            joints_rad: [0.0; 7],
            blocks: Vec::new(),
        };
        let mut target = [0.3, 0.0, 0.15];
        (0..steps)
            .map(|_| {
                let action = policy.act(&PlayObservation {
                    scene: &scene,
                    target_xyz_m: target,
                    target_rpy_rad: [0.0; 3],
                });
                for (axis_m, step_m) in target.iter_mut().zip(action.translation_m) {
                    *axis_m += step_m;
                }
                target
            })
            .collect()
    }

    #[test]
    fn the_last_steps_go_to_one_pose_and_stay_there() {
        for seed in 0..5 {
            let scene = Scene {
                joints_rad: [0.0; 7],
                blocks: Vec::new(),
            };
            let steps = 20;
            let mut policy = PlayPolicy::new(&scene, StdRng::seed_from_u64(seed), steps);
            assert_eq!(policy.behaviour(), Behaviour::Wander);
            let before = commanded_path(&mut policy, steps - SETTLE_STEPS);
            assert!(!policy.settling(), "seed {seed}: settles too early");
            // Past the episode's length it keeps holding the same pose (noise only).
            let after = commanded_path(&mut policy, SETTLE_STEPS + 30);
            assert!(policy.settling(), "seed {seed}");
            let end = after[after.len() - 1];
            let wobble_m = after[after.len() - 10..]
                .iter()
                .map(|p| distance(p, &end))
                .fold(0.0, f64::max);
            assert!(wobble_m < 0.01, "seed {seed}: still moving {wobble_m} m");
            let (min, max) = widowx_sim::tabletop::ARM_AREA_M;
            let near_rest = distance(&end, &widowx::bridge::START_XYZ_M) < 0.04;
            let in_area =
                (0..3).all(|axis| (min[axis] - 0.01..max[axis] + 0.01).contains(&end[axis]));
            assert!(near_rest || in_area, "seed {seed}: ends at {end:?}");
            assert_eq!(before.len(), steps - SETTLE_STEPS);
        }
    }
}
