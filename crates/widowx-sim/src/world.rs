//! The tabletop world as pure state: blocks on a table, the gripper's fingers, and the rules of
//! grasping and releasing. No threads and no clock: [`World::step`] takes the arm's joint angles
//! and applies the rules, so the same joint trajectory always gives the same world.
//!
//! Rules (kinematic, no physics):
//! - The fingers' pads sit [`finger_position_m`] either side of the gripper's centre plane
//!   (the Interbotix crank linkage), driven by the gripper servo: the fingers' linkage angle
//!   follows the servo's motion.
//! - A free block is grasped when the pad gap closes past the block's width (plus
//!   [`GRASP_MARGIN_M`]) while the block lies between the pads: its centre between the pad
//!   planes, and enough of it alongside the pads (see [`World::step`]). The fingers centre it
//!   and square it up: from then on it moves rigidly with `ee_gripper_link`.
//! - A held block stops the fingers at its width. The virtual servo itself has no such stop (it
//!   runs on to its closed stop), so while a block is held the fingers ignore the servo's
//!   closing and follow only its opening: the block is let go as soon as the servo turns open,
//!   as a real gripper stalled on a block would.
//! - A held block is released when the gap opens past its width plus [`RELEASE_MARGIN_M`]; it
//!   drops straight down onto the table, keeping its heading.
//! - Blocks never push each other or get pushed by the arm.
//!
//! [`Scene::joints_rad`]`[6]` is the fingers' linkage angle (what the camera sees); it equals the
//! servo's angle except after a held block stopped the fingers short, until the servo reaches
//! its open stop again.

use std::f64::consts::FRAC_PI_2;

use widowx::joints::{ARM_JOINTS, Joint};
use widowx::kinematics::forward;
use widowx::pose::{IDENTITY_ROTATION, Pose, Rotation, rot_z};

use widowx::bridge::finger_position_m;

use crate::dynamics::GRIPPER_STOPS_RAD;

/// The gap may exceed the block's width by this much when the grasp takes hold, m.
pub const GRASP_MARGIN_M: f64 = 0.001;
/// A held block drops once the gap is this much wider than the block, m.
pub const RELEASE_MARGIN_M: f64 = 0.003;
/// Finger pads along the gripper's x axis (toward the fingertips), in `ee_gripper_link`, m.
pub const PAD_X_RANGE_M: (f64, f64) = (-0.040, 0.008);
/// Half the pads' width along the gripper's z axis, m.
pub const PAD_HALF_WIDTH_M: f64 = 0.011;
/// Fraction of the block's size that must lie alongside the pads (x) for a grasp.
const MIN_PAD_OVERLAP_FRACTION: f64 = 0.4;
/// Height of the table surface in `base_link`, m (the arm stands on it).
pub const TABLE_Z_M: f64 = 0.0;
/// The table top, `(x_min, x_max, y_min, y_max)` in `base_link`, m.
pub const TABLE_EXTENT_M: (f64, f64, f64, f64) = (-0.25, 0.75, -0.55, 0.55);

/// One block as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockState {
    pub name: String,
    pub color_rgb: [u8; 3],
    /// Edge length of the cube, m.
    pub size_m: f64,
    /// Centre of the cube in `base_link`, m.
    pub position_m: [f64; 3],
    /// Orientation of the cube in `base_link` (its faces are along its columns).
    pub rotation: Rotation,
    /// Between the fingers, moving with the gripper.
    pub held: bool,
}

impl BlockState {
    /// A block resting on the table at `xy_m`, turned `yaw_rad` about the vertical.
    pub fn on_table(
        name: &str,
        color_rgb: [u8; 3],
        size_m: f64,
        xy_m: [f64; 2],
        yaw_rad: f64,
    ) -> BlockState {
        BlockState {
            name: name.to_string(),
            color_rgb,
            size_m,
            position_m: [xy_m[0], xy_m[1], TABLE_Z_M + size_m / 2.0],
            rotation: rot_z(yaw_rad),
            held: false,
        }
    }

    fn pose(&self) -> Pose {
        Pose::new(self.position_m, self.rotation)
    }
}

/// Everything a camera sees: the arm's joints and the blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Joint angles in `Joint::ALL` order (six arm joints, then the gripper servo), rad.
    pub joints_rad: [f64; 7],
    pub blocks: Vec<BlockState>,
}

impl Scene {
    /// The six arm joints.
    pub fn arm_joints_rad(&self) -> [f64; ARM_JOINTS] {
        std::array::from_fn(|i| self.joints_rad[i])
    }

    /// Pose of `ee_gripper_link`.
    pub fn ee_pose(&self) -> Pose {
        forward(&self.arm_joints_rad())
    }

    /// Where the finger pads are, from the centre plane: the servo's linkage, but never inside a
    /// held block (the block stops the fingers).
    pub fn finger_position_m(&self) -> f64 {
        let free = finger_position_m(self.joints_rad[gripper_index()]);
        self.blocks
            .iter()
            .filter(|b| b.held)
            .fold(free, |position, b| position.max(b.size_m / 2.0))
    }

    /// The block called `name`.
    pub fn block(&self, name: &str) -> Option<&BlockState> {
        self.blocks.iter().find(|b| b.name == name)
    }
}

fn gripper_index() -> usize {
    Joint::ALL.len() - 1
}

/// A held block: which one, and where it sits in `ee_gripper_link`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grip {
    block: usize,
    in_gripper: Pose,
}

/// What changed in one [`World::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldEvent {
    /// Block (index) grasped.
    Grasped(usize),
    /// Block (index) released onto the table.
    Released(usize),
}

/// The tabletop's state and rules.
#[derive(Debug, Clone)]
pub struct World {
    blocks: Vec<BlockState>,
    grip: Option<Grip>,
    /// The arm's joints, the gripper entry being the fingers' linkage angle.
    joints_rad: [f64; 7],
    /// The gripper servo's angle at the previous step.
    servo_rad: f64,
    /// The fingers' linkage angle at which a held block stopped them.
    contact_rad: f64,
}

impl World {
    /// A world with `blocks` (as given: they may be anywhere) and the arm at `joints_rad`.
    pub fn new(blocks: Vec<BlockState>, joints_rad: [f64; 7]) -> World {
        let mut blocks = blocks;
        for block in &mut blocks {
            block.held = false;
        }
        World {
            blocks,
            grip: None,
            joints_rad,
            servo_rad: joints_rad[gripper_index()],
            contact_rad: GRIPPER_STOPS_RAD.0,
        }
    }

    /// The current scene.
    pub fn scene(&self) -> Scene {
        Scene {
            joints_rad: self.joints_rad,
            blocks: self.blocks.clone(),
        }
    }

    pub fn blocks(&self) -> &[BlockState] {
        &self.blocks
    }

    pub fn joints_rad(&self) -> &[f64; 7] {
        &self.joints_rad
    }

    /// Index of the held block, if any.
    pub fn held_block(&self) -> Option<usize> {
        self.grip.map(|g| g.block)
    }

    /// Puts every block back on the table at `xy_m` (one per block, in order), square to the
    /// axes, and lets go of any held block. Checks the count and that each lies on the table.
    pub fn place_blocks(&mut self, xy_m: &[[f64; 2]]) -> Result<(), String> {
        if xy_m.len() != self.blocks.len() {
            return Err(format!(
                "{} block positions given; the world has {} blocks",
                xy_m.len(),
                self.blocks.len()
            ));
        }
        for (block, xy) in self.blocks.iter().zip(xy_m) {
            check_on_table(&block.name, *xy)?;
        }
        self.grip = None;
        for (block, xy) in self.blocks.iter_mut().zip(xy_m) {
            *block = BlockState::on_table(&block.name, block.color_rgb, block.size_m, *xy, 0.0);
        }
        Ok(())
    }

    /// Moves the arm to `joints_rad` and applies the grasp and release rules. Callers step
    /// often enough (a few ms of motion) that nothing passes between two steps unseen.
    pub fn step(&mut self, joints_rad: &[f64; 7]) -> Option<WorldEvent> {
        let gripper = gripper_index();
        let previous_finger_rad = self.joints_rad[gripper];
        let finger_rad = self.follow_servo(joints_rad[gripper]);
        self.joints_rad = *joints_rad;
        self.joints_rad[gripper] = finger_rad;
        let ee = forward(&std::array::from_fn(|i| joints_rad[i]));
        let pad_m = finger_position_m(finger_rad);
        let previous_pad_m = finger_position_m(previous_finger_rad);
        let event = match self.grip {
            Some(grip) => {
                let block = &mut self.blocks[grip.block];
                if 2.0 * pad_m > block.size_m + RELEASE_MARGIN_M {
                    drop_onto_table(block, &ee);
                    self.grip = None;
                    Some(WorldEvent::Released(grip.block))
                } else {
                    None
                }
            }
            None => {
                let event = self.try_grasp(&ee, previous_pad_m, pad_m);
                if event.is_some() {
                    self.contact_rad = finger_rad;
                }
                event
            }
        };
        if let Some(grip) = self.grip {
            let carried = ee.compose(&grip.in_gripper);
            let block = &mut self.blocks[grip.block];
            block.position_m = carried.position_m;
            block.rotation = carried.rotation;
        }
        event
    }

    /// The fingers' linkage angle after the servo moved to `servo_rad`: it moves as the servo
    /// does, but not closer than a held block allows; back at a stop, it is the servo's angle.
    fn follow_servo(&mut self, servo_rad: f64) -> f64 {
        let (closed_rad, open_rad) = GRIPPER_STOPS_RAD;
        let moved_rad = servo_rad - std::mem::replace(&mut self.servo_rad, servo_rad);
        let mut finger_rad =
            (self.joints_rad[gripper_index()] + moved_rad).clamp(closed_rad, open_rad);
        if self.grip.is_some() {
            finger_rad = finger_rad.max(self.contact_rad);
        } else if servo_rad <= closed_rad || servo_rad >= open_rad {
            finger_rad = servo_rad;
        }
        finger_rad
    }

    /// Grasps the first block the closing pads reach, if any.
    fn try_grasp(&mut self, ee: &Pose, previous_pad_m: f64, pad_m: f64) -> Option<WorldEvent> {
        let to_gripper = ee.inverse();
        let index = self.blocks.iter().position(|block| {
            let closes_on_it = 2.0 * previous_pad_m > block.size_m + GRASP_MARGIN_M
                && 2.0 * pad_m <= block.size_m + GRASP_MARGIN_M;
            closes_on_it
                && between_pads(
                    &to_gripper.transform_point(&block.position_m),
                    block.size_m,
                    previous_pad_m,
                )
        })?;
        let block = &mut self.blocks[index];
        let in_gripper = to_gripper.compose(&block.pose());
        // The closing pads centre the block between them and square it up against them.
        let mut position_m = in_gripper.position_m;
        position_m[1] = 0.0;
        self.grip = Some(Grip {
            block: index,
            in_gripper: Pose::new(position_m, IDENTITY_ROTATION),
        });
        block.held = true;
        Some(WorldEvent::Grasped(index))
    }
}

/// Whether a block centred at `p` (in `ee_gripper_link`) of edge `size_m` lies between pads
/// that stand `pad_m` from the centre plane.
fn between_pads(p: &[f64; 3], size_m: f64, pad_m: f64) -> bool {
    let half = size_m / 2.0;
    let overlap = |lo: f64, hi: f64, centre: f64| hi.min(centre + half) - lo.max(centre - half);
    p[1].abs() < pad_m
        && overlap(PAD_X_RANGE_M.0, PAD_X_RANGE_M.1, p[0]) >= MIN_PAD_OVERLAP_FRACTION * size_m
        && overlap(-PAD_HALF_WIDTH_M, PAD_HALF_WIDTH_M, p[2]) > 0.0
}

/// Lets a block fall straight down onto the table, turned as the gripper held it.
fn drop_onto_table(block: &mut BlockState, ee: &Pose) {
    block.held = false;
    block.position_m[2] = TABLE_Z_M + block.size_m / 2.0;
    // The fingers close along the gripper's y axis; the block's faces were against them.
    let closing = [ee.rotation[0][1], ee.rotation[1][1]];
    let yaw_rad = if closing[0].hypot(closing[1]) > 1e-6 {
        closing[1].atan2(closing[0]) - FRAC_PI_2
    } else {
        0.0
    };
    block.rotation = rot_z(yaw_rad);
}

fn check_on_table(name: &str, xy_m: [f64; 2]) -> Result<(), String> {
    let (x_min, x_max, y_min, y_max) = TABLE_EXTENT_M;
    let finite = xy_m.iter().all(|v| v.is_finite());
    if finite && (x_min..=x_max).contains(&xy_m[0]) && (y_min..=y_max).contains(&xy_m[1]) {
        Ok(())
    } else {
        Err(format!(
            "block `{name}` at ({}, {}) m is off the table (x {x_min}..{x_max}, y {y_min}..{y_max})",
            xy_m[0], xy_m[1]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::bridge::bridge_target_pose;
    use widowx::kinematics::{IkConfig, inverse};

    const SIZE_M: f64 = 0.032;

    fn joints_at(xyz_m: [f64; 3], gripper_rad: f64) -> [f64; 7] {
        let target = bridge_target_pose(xyz_m, [0.0; 3]);
        let arm = inverse(
            &target,
            &[0.0, -0.5, 0.5, 0.0, 1.5, 0.0],
            &IkConfig::default(),
        )
        .unwrap();
        let mut joints = [0.0; 7];
        joints[..6].copy_from_slice(&arm);
        joints[6] = gripper_rad;
        joints
    }

    fn world_with_block_at(xy_m: [f64; 2]) -> World {
        let block = BlockState::on_table("red", [200, 30, 30], SIZE_M, xy_m, 0.3);
        World::new(vec![block], joints_at([0.3, 0.0, 0.15], 0.9))
    }

    /// Closes the gripper from open to the closed stop at `xyz_m`, in small steps.
    fn close_at(world: &mut World, xyz_m: [f64; 3]) -> Vec<WorldEvent> {
        (0..=90)
            .filter_map(|i| world.step(&joints_at(xyz_m, 0.9 - 0.02 * f64::from(i))))
            .collect()
    }

    #[test]
    fn closing_around_a_block_grasps_it_and_lifting_carries_it() {
        let mut world = world_with_block_at([0.30, 0.05]);
        let grasp_xyz = [0.30, 0.052, SIZE_M / 2.0];
        world.step(&joints_at(grasp_xyz, 0.9));
        assert_eq!(
            close_at(&mut world, grasp_xyz),
            vec![WorldEvent::Grasped(0)]
        );
        assert!(world.blocks()[0].held);
        let lifted = joints_at([0.25, -0.05, 0.12], -0.9);
        world.step(&lifted);
        let block = &world.blocks()[0];
        let ee = forward(&std::array::from_fn(|i| lifted[i])).position_m;
        assert!(
            (block.position_m[0] - ee[0]).abs() < 0.005,
            "{block:?} vs {ee:?}"
        );
        assert!((block.position_m[1] - ee[1]).abs() < 0.005);
        assert!(block.position_m[2] > 0.09, "carried up: {block:?}");
        assert!(world.scene().finger_position_m() >= SIZE_M / 2.0);
    }

    #[test]
    fn opening_drops_the_block_straight_down() {
        let mut world = world_with_block_at([0.30, 0.05]);
        let grasp_xyz = [0.30, 0.05, SIZE_M / 2.0];
        world.step(&joints_at(grasp_xyz, 0.9));
        close_at(&mut world, grasp_xyz);
        let carry_xyz = [0.22, -0.08, 0.10];
        world.step(&joints_at(carry_xyz, -0.9));
        let events: Vec<_> = (0..=90)
            .filter_map(|i| world.step(&joints_at(carry_xyz, -0.9 + 0.02 * f64::from(i))))
            .collect();
        assert_eq!(events, vec![WorldEvent::Released(0)]);
        let block = &world.blocks()[0];
        assert!(!block.held);
        assert!((block.position_m[0] - 0.22).abs() < 0.005, "{block:?}");
        assert!((block.position_m[1] + 0.08).abs() < 0.005);
        assert!((block.position_m[2] - SIZE_M / 2.0).abs() < 1e-12);
        assert!((block.rotation[2][2] - 1.0).abs() < 1e-12, "lies flat");
    }

    #[test]
    fn a_held_block_stops_the_fingers_and_opening_releases_it_at_once() {
        let mut world = world_with_block_at([0.30, 0.05]);
        let xyz = [0.30, 0.05, SIZE_M / 2.0];
        world.step(&joints_at(xyz, 0.9));
        close_at(&mut world, xyz); // the servo ends at its closed stop, -0.9 rad
        assert!((world.scene().finger_position_m() - SIZE_M / 2.0).abs() < 0.001);
        // Opening from the closed stop: the fingers move off the block with the servo's first
        // 0.1 rad, not after the servo has travelled back to the block's width (0.6 rad).
        let events: Vec<_> = (1..=10)
            .filter_map(|i| world.step(&joints_at(xyz, -0.9 + 0.01 * f64::from(i))))
            .collect();
        assert_eq!(events, vec![WorldEvent::Released(0)]);
        // The fingers keep opening from where the block held them and meet the servo at the stop.
        world.step(&joints_at(xyz, 0.5));
        assert!(world.scene().joints_rad[6] > 0.85);
        world.step(&joints_at(xyz, 0.9));
        assert_eq!(world.scene().joints_rad[6], 0.9);
    }

    #[test]
    fn no_grasp_when_the_block_is_not_between_the_fingers() {
        for xyz in [
            [0.30, 0.12, SIZE_M / 2.0], // beside the block
            [0.30, 0.05, 0.08],         // above it
        ] {
            let mut world = world_with_block_at([0.30, 0.05]);
            world.step(&joints_at(xyz, 0.9));
            assert!(close_at(&mut world, xyz).is_empty(), "{xyz:?}");
        }
    }

    #[test]
    fn closed_fingers_lowered_onto_a_block_do_not_grasp_it() {
        let mut world = world_with_block_at([0.30, 0.05]);
        world.step(&joints_at([0.30, 0.05, 0.10], -0.9));
        world.step(&joints_at([0.30, 0.05, SIZE_M / 2.0], -0.9));
        assert_eq!(world.held_block(), None);
    }

    #[test]
    fn place_blocks_checks_count_and_table() {
        let mut world = world_with_block_at([0.30, 0.05]);
        assert!(world.place_blocks(&[]).is_err());
        assert!(
            world
                .place_blocks(&[[2.0, 0.0]])
                .unwrap_err()
                .contains("off the table")
        );
        world.place_blocks(&[[0.2, -0.1]]).unwrap();
        assert_eq!(world.blocks()[0].position_m, [0.2, -0.1, SIZE_M / 2.0]);
    }
}
