//! The tabletop around the virtual arm: blocks on a table that the arm can pick up and put down,
//! advanced with the arm's own joint motion.
//!
//! [`VirtualArm::spawn_tabletop`] starts the arm as [`VirtualArm::spawn`] does and a world
//! thread that follows the joints every [`WORLD_STEP_S`] (the servo motion is exact at any
//! instant, so the world sees what the servos do, not what a client reads). [`SceneHandle`] is
//! the cheap, cloneable view a camera or a test holds: [`SceneHandle::scene`] brings the world
//! up to the present (sub-stepping any gap) and returns a snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use widowx::bridge::START_XYZ_M;

use crate::render::RenderStyle;
use crate::server::Shared;
use crate::world::{BlockState, Scene, World, WorldEvent};
use crate::{SimConfig, SimError, VirtualArm};

/// Longest stretch of arm motion the world skips over between two steps, s. At the joints'
/// top speed (pi rad/s) the gripper moves about 5 mm in this time.
pub const WORLD_STEP_S: f64 = 0.004;
/// Steps taken at most to catch up on one gap (a longer gap is stepped more coarsely).
const MAX_CATCH_UP_STEPS: u32 = 2_000;
/// Edge length of the default blocks, m.
pub const DEFAULT_BLOCK_SIZE_M: f64 = 0.04;
/// Where random start positions are drawn: inside Bridge's evaluation box (x 0.10..0.45,
/// y -0.15..0.25) with a margin, `(x_min, x_max, y_min, y_max)`, m.
pub const BLOCK_AREA_M: (f64, f64, f64, f64) = (0.17, 0.40, -0.11, 0.21);
/// Where the gripper goes between tasks, `(min, max)` per axis in `base_link`, m: inside
/// Bridge's box, at heights where the open pads clear the blocks. Play data wanders here, and
/// evaluation goals show the arm somewhere in it ([`random_arm_xyz_m`]).
pub const ARM_AREA_M: ([f64; 3], [f64; 3]) = ([0.15, -0.12, 0.07], [0.40, 0.22, 0.20]);
/// Share of [`random_arm_xyz_m`] draws near [`START_XYZ_M`] (Bridge's start pose): play episodes often go back
/// to rest, so goal images with the arm at rest are among the data's futures.
pub const REST_SHARE: f64 = 0.3;
/// How far a "near rest" draw is from the reset pose at most, per axis, m.
const REST_SPREAD_M: [f64; 3] = [0.02, 0.02, 0.01];

/// A gripper position where play episodes pause and end, and where evaluation goals show the
/// arm: near the reset pose ([`REST_SHARE`] of draws) or anywhere in [`ARM_AREA_M`]. The one
/// distribution both sides use, so that every goal pose is one the data shows.
pub fn random_arm_xyz_m(rng: &mut StdRng) -> [f64; 3] {
    if rng.random_bool(REST_SHARE) {
        return std::array::from_fn(|axis| {
            START_XYZ_M[axis] + rng.random_range(-REST_SPREAD_M[axis]..REST_SPREAD_M[axis])
        });
    }
    let (min, max) = ARM_AREA_M;
    std::array::from_fn(|axis| rng.random_range(min[axis]..max[axis]))
}

/// Least distance between the centres of two randomly placed blocks, m.
pub const MIN_BLOCK_SPACING_M: f64 = 0.08;
/// Allowed block sizes, m (the open fingers are about 6.7 cm apart).
const BLOCK_SIZE_RANGE_M: (f64, f64) = (0.015, 0.06);

/// One kind of block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    pub name: String,
    pub color_rgb: [u8; 3],
    /// Edge length of the cube, m.
    pub size_m: f64,
}

impl BlockSpec {
    pub fn new(name: &str, color_rgb: [u8; 3], size_m: f64) -> BlockSpec {
        BlockSpec {
            name: name.to_string(),
            color_rgb,
            size_m,
        }
    }

    /// Red, green and blue 4 cm cubes.
    pub fn default_set() -> Vec<BlockSpec> {
        vec![
            BlockSpec::new("red", [205, 38, 38], DEFAULT_BLOCK_SIZE_M),
            BlockSpec::new("green", [40, 170, 60], DEFAULT_BLOCK_SIZE_M),
            BlockSpec::new("blue", [40, 80, 215], DEFAULT_BLOCK_SIZE_M),
        ]
    }

    /// This block resting on the table at `xy_m`, square to the axes.
    pub fn on_table(&self, xy_m: [f64; 2]) -> BlockState {
        BlockState::on_table(&self.name, self.color_rgb, self.size_m, xy_m, 0.0)
    }
}

/// What is on the table when the arm starts.
#[derive(Debug, Clone, PartialEq)]
pub struct TabletopConfig {
    pub blocks: Vec<BlockSpec>,
    /// Start position of each block on the table (x, y in `base_link`), in the order of
    /// `blocks`; empty = drawn from `seed` with [`random_block_positions`].
    pub block_positions_m: Vec<[f64; 2]>,
    /// Seed of the random start positions and of the rendering jitter.
    pub seed: u64,
    /// Jitter lighting and colours ([`RenderStyle::jittered`]) in the camera's view.
    pub jitter: bool,
}

impl TabletopConfig {
    /// The default blocks at positions drawn from `seed`, no jitter.
    pub fn new(seed: u64) -> TabletopConfig {
        TabletopConfig {
            blocks: BlockSpec::default_set(),
            block_positions_m: Vec::new(),
            seed,
            jitter: false,
        }
    }

    /// The style a camera should render this tabletop in.
    pub fn render_style(&self) -> RenderStyle {
        if self.jitter {
            RenderStyle::jittered(self.seed)
        } else {
            RenderStyle::plain()
        }
    }

    /// The blocks at their start positions; checks names, sizes and positions.
    pub fn start_blocks(&self) -> Result<Vec<BlockState>, SimError> {
        check_blocks(&self.blocks)?;
        let positions = if self.block_positions_m.is_empty() {
            random_block_positions(&self.blocks, &mut StdRng::seed_from_u64(self.seed))
        } else {
            self.block_positions_m.clone()
        };
        let mut world = World::new(
            self.blocks.iter().map(|b| b.on_table([0.3, 0.0])).collect(),
            [0.0; 7],
        );
        world
            .place_blocks(&positions)
            .map_err(|e| SimError::Config(format!("tabletop block_positions_m: {e}")))?;
        Ok(world.blocks().to_vec())
    }
}

fn check_blocks(blocks: &[BlockSpec]) -> Result<(), SimError> {
    for (i, block) in blocks.iter().enumerate() {
        if block.name.is_empty() || blocks[..i].iter().any(|b| b.name == block.name) {
            return Err(SimError::Config(format!(
                "tabletop block {i}: name `{}` is empty or used twice; expected unique names",
                block.name
            )));
        }
        let (low, high) = BLOCK_SIZE_RANGE_M;
        if !(low..=high).contains(&block.size_m) {
            return Err(SimError::Config(format!(
                "tabletop block `{}`: size_m = {}; expected {low}..={high} m",
                block.name, block.size_m
            )));
        }
    }
    Ok(())
}

/// Start positions in [`BLOCK_AREA_M`], at least [`MIN_BLOCK_SPACING_M`] apart (best effort
/// after many draws), one per block.
pub fn random_block_positions(blocks: &[BlockSpec], rng: &mut StdRng) -> Vec<[f64; 2]> {
    let mut positions: Vec<[f64; 2]> = Vec::with_capacity(blocks.len());
    for _ in blocks {
        let spot = free_spot(&positions, 200, rng);
        positions.push(spot);
    }
    positions
}

/// A random spot in [`BLOCK_AREA_M`] at least [`MIN_BLOCK_SPACING_M`] from every point of
/// `occupied` (block centres, and any place a block must not land on): the first of at most
/// `attempts` draws that is clear, else the clearest one drawn. The one block-placement search:
/// scene set-up, evaluation tasks and the play collector all use it.
pub fn free_spot(occupied: &[[f64; 2]], attempts: usize, rng: &mut StdRng) -> [f64; 2] {
    let (x_min, x_max, y_min, y_max) = BLOCK_AREA_M;
    let mut best = [x_min, y_min];
    let mut best_clearance = f64::NEG_INFINITY;
    for _ in 0..attempts {
        let candidate = [
            rng.random_range(x_min..x_max),
            rng.random_range(y_min..y_max),
        ];
        let clearance = occupied
            .iter()
            .map(|p| (p[0] - candidate[0]).hypot(p[1] - candidate[1]))
            .fold(f64::INFINITY, f64::min);
        if clearance >= MIN_BLOCK_SPACING_M {
            return candidate;
        }
        if clearance > best_clearance {
            best = candidate;
            best_clearance = clearance;
        }
    }
    best
}

/// The world, when it was last stepped, and how often each block has been grasped.
#[derive(Debug)]
struct Clocked {
    world: World,
    stepped_at: Instant,
    grasps: Vec<u64>,
}

#[derive(Debug)]
struct TabletopShared {
    arm: Arc<Shared>,
    world: Mutex<Clocked>,
    style: RenderStyle,
    specs: Vec<BlockSpec>,
    steps: AtomicU64,
}

/// A view of the tabletop: cheap to clone, usable from any thread; the world keeps advancing
/// with the arm while the [`VirtualArm`] lives.
#[derive(Debug, Clone)]
pub struct SceneHandle {
    shared: Arc<TabletopShared>,
}

impl SceneHandle {
    /// The scene now: the world is first brought up to the present.
    pub fn scene(&self) -> Scene {
        let clocked = self.advance_to(Instant::now());
        clocked.world.scene()
    }

    /// Puts every block back on the table at `xy_m` (one per block, in the configured order),
    /// square to the axes; a held block is let go. For resetting between episodes.
    pub fn set_block_positions(&self, xy_m: &[[f64; 2]]) -> Result<(), SimError> {
        let mut clocked = self.advance_to(Instant::now());
        clocked
            .world
            .place_blocks(xy_m)
            .map_err(|e| SimError::Config(format!("set_block_positions: {e}")))
    }

    /// The blocks, as configured.
    pub fn block_specs(&self) -> &[BlockSpec] {
        &self.shared.specs
    }

    /// The style the tabletop's camera renders in (jittered from the seed if configured).
    pub fn render_style(&self) -> &RenderStyle {
        &self.shared.style
    }

    /// How many times each block (in the configured order) has been grasped since the arm
    /// was spawned: evaluation tells "never touched" from "grasped but misplaced" with it.
    pub fn grasp_counts(&self) -> Vec<u64> {
        self.advance_to(Instant::now()).grasps.clone()
    }

    /// World steps taken so far.
    pub fn steps(&self) -> u64 {
        self.shared.steps.load(Ordering::Relaxed)
    }

    /// Steps the world up to `now` along the arm's joint motion, at most [`WORLD_STEP_S`] apart.
    fn advance_to(&self, now: Instant) -> MutexGuard<'_, Clocked> {
        let mut clocked = self
            .shared
            .world
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let gap_s = now
            .saturating_duration_since(clocked.stepped_at)
            .as_secs_f64();
        if gap_s <= 0.0 {
            return clocked;
        }
        let steps = ((gap_s / WORLD_STEP_S).ceil() as u32).clamp(1, MAX_CATCH_UP_STEPS);
        let from = clocked.stepped_at;
        {
            let arm = self.shared.arm.arm();
            for k in 1..=steps {
                let at = from + Duration::from_secs_f64(gap_s * f64::from(k) / f64::from(steps));
                let joints_rad = arm.joint_positions_rad(at);
                if let Some(WorldEvent::Grasped(block)) = clocked.world.step(&joints_rad)
                    && let Some(count) = clocked.grasps.get_mut(block)
                {
                    *count += 1;
                }
            }
        }
        clocked.stepped_at = now;
        self.shared
            .steps
            .fetch_add(u64::from(steps), Ordering::Relaxed);
        clocked
    }
}

/// The world thread and the handle it advances; stops when dropped.
#[derive(Debug)]
pub(crate) struct Tabletop {
    handle: SceneHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tabletop {
    fn start(
        arm: Arc<Shared>,
        config: &TabletopConfig,
        initial_joints_rad: [f64; 7],
    ) -> Result<Tabletop, SimError> {
        let blocks = config.start_blocks()?;
        let handle = SceneHandle {
            shared: Arc::new(TabletopShared {
                arm,
                world: Mutex::new(Clocked {
                    grasps: vec![0; blocks.len()],
                    world: World::new(blocks, initial_joints_rad),
                    stepped_at: Instant::now(),
                }),
                style: config.render_style(),
                specs: config.blocks.clone(),
                steps: AtomicU64::new(0),
            }),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (handle, stop) = (handle.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("widowx-sim-world".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        drop(handle.advance_to(Instant::now()));
                        std::thread::sleep(Duration::from_secs_f64(WORLD_STEP_S));
                    }
                })
                .map_err(SimError::Thread)?
        };
        Ok(Tabletop {
            handle,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Tabletop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl VirtualArm {
    /// A virtual arm standing on a table with blocks: as [`VirtualArm::spawn`], plus a world
    /// thread that moves held blocks with the gripper. Errors name a bad block or position.
    pub fn spawn_tabletop(
        config: SimConfig,
        tabletop: TabletopConfig,
    ) -> Result<VirtualArm, SimError> {
        let initial_joints_rad = config.initial_joints_rad;
        let mut arm = VirtualArm::spawn(config)?;
        arm.tabletop = Some(Tabletop::start(
            Arc::clone(&arm.shared),
            &tabletop,
            initial_joints_rad,
        )?);
        Ok(arm)
    }

    /// The tabletop's scene handle (`None` for an arm spawned without one).
    pub fn scene_handle(&self) -> Option<SceneHandle> {
        self.tabletop.as_ref().map(|t| t.handle.clone())
    }
}
