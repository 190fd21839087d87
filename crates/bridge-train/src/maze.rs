//! A small point-mass maze where reaching far goals needs stitching.
//!
//! The layout is a U: the start and the goal sit at the bottom of the two arms, a wall between
//! them. Training data are short noisy segments, each going from one free cell to an adjacent one,
//! so no segment ever goes from start to goal in one piece: a goal-conditioned behaviour cloner
//! has never seen (start, far goal) pairs, while a quasimetric can chain the segments through the
//! triangle inequality. This is the learning test of the MQE core, and a quick sanity task for
//! `bridge-train` on a laptop.
//!
//! The same maze can be observed as small top-down images ([`Maze::render_rgb`],
//! [`Segments::to_pixel_dataset`]): the check that the pixel path (IMPALA encoders, crop,
//! pixel batches) learns a quasimetric, on a task small enough to train on a CPU in minutes.

use bridge_data::{Dataset, DatasetError, FrameBytes, Obs};
use candle_core::Tensor;
use mqe::{Agent, MqeError, ObsKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Metres moved per step at full action.
pub const STEP_SIZE_M: f32 = 0.2;
/// Distance to the goal that counts as reached.
pub const SUCCESS_RADIUS_M: f32 = 0.3;

/// Radius of the agent's disc in [`Maze::render_rgb`] images, m.
const AGENT_RADIUS_M: f32 = 0.35;
/// Colour of walls in [`Maze::render_rgb`] images.
const WALL_RGB: [u8; 3] = [110, 110, 110];

/// `#` wall, `.` free. One cell is 1 m; cell (row, col) spans [col, col+1] x [row, row+1].
const LAYOUT: [&str; 5] = ["#####", "#...#", "#.#.#", "#.#.#", "#####"];

/// The U-maze.
#[derive(Debug, Clone)]
pub struct Maze {
    walls: Vec<Vec<bool>>,
}

/// One evaluation task: start and goal positions, metres.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    pub start_m: [f32; 2],
    pub goal_m: [f32; 2],
}

/// Trajectory segments for training: row-major observations (x, y) and actions, with episode ends.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    pub observations: Vec<f32>,
    pub actions: Vec<f32>,
    /// Per row: 1 on the last row of each segment (that row has no next observation).
    pub terminals: Vec<u8>,
}

impl Default for Maze {
    fn default() -> Self {
        Self::new()
    }
}

impl Maze {
    pub fn new() -> Maze {
        let walls = LAYOUT
            .iter()
            .map(|row| row.chars().map(|c| c == '#').collect())
            .collect();
        Maze { walls }
    }

    /// Whether the point `p` (metres) lies inside a wall or outside the maze.
    pub fn blocked(&self, p: [f32; 2]) -> bool {
        let (col, row) = (p[0].floor(), p[1].floor());
        if col < 0.0 || row < 0.0 {
            return true;
        }
        let cell = self
            .walls
            .get(row as usize)
            .and_then(|r| r.get(col as usize));
        cell.copied().unwrap_or(true)
    }

    /// Free cells as (row, col).
    pub fn free_cells(&self) -> Vec<(usize, usize)> {
        let mut cells = Vec::new();
        for (row, line) in self.walls.iter().enumerate() {
            for (col, wall) in line.iter().enumerate() {
                if !wall {
                    cells.push((row, col));
                }
            }
        }
        cells
    }

    /// The maze seen from above as `side_px` x `side_px` RGB bytes (HWC): walls grey, floor
    /// black, the agent a red disc whose anti-aliased edge shows sub-pixel moves.
    pub fn render_rgb(&self, p: [f32; 2], side_px: usize) -> Vec<u8> {
        let rows = self.walls.len() as f32;
        let m_per_px = rows / side_px as f32;
        let mut rgb = vec![0u8; side_px * side_px * 3];
        for (i, pixel) in rgb.chunks_exact_mut(3).enumerate() {
            let centre_m = [
                ((i % side_px) as f32 + 0.5) * m_per_px,
                ((i / side_px) as f32 + 0.5) * m_per_px,
            ];
            if self.blocked(centre_m) {
                pixel.copy_from_slice(&WALL_RGB);
            }
            let edge_px = (distance_m(centre_m, p) - AGENT_RADIUS_M) / m_per_px;
            let cover = (0.5 - edge_px).clamp(0.0, 1.0);
            pixel[0] = pixel[0].max((255.0 * cover) as u8);
        }
        rgb
    }

    /// Centre of cell (row, col), metres.
    pub fn cell_center_m(cell: (usize, usize)) -> [f32; 2] {
        [cell.1 as f32 + 0.5, cell.0 as f32 + 0.5]
    }

    /// One step: the action is clipped to [-1, 1]; a move into a wall is cancelled per axis.
    pub fn step(&self, p: [f32; 2], action: [f32; 2]) -> [f32; 2] {
        let mut next = p;
        for axis in 0..2 {
            let mut trial = next;
            trial[axis] += STEP_SIZE_M * action[axis].clamp(-1.0, 1.0);
            if !self.blocked(trial) {
                next = trial;
            }
        }
        next
    }

    /// The far task: bottom of the left arm to the bottom of the right arm (6 cell moves around
    /// the wall, about 30 steps at full speed).
    pub fn far_task() -> Task {
        Task {
            start_m: Self::cell_center_m((3, 1)),
            goal_m: Self::cell_center_m((3, 3)),
        }
    }

    /// The far task in both directions (left arm to right arm, and back).
    pub fn far_tasks() -> [Task; 2] {
        let there = Self::far_task();
        let back = Task {
            start_m: there.goal_m,
            goal_m: there.start_m,
        };
        [there, back]
    }

    /// Every one-cell move between adjacent free cells, both ways: what the data show directly.
    pub fn near_tasks(&self) -> Vec<Task> {
        let cells = self.free_cells();
        let mut tasks = Vec::new();
        for &from in &cells {
            for &to in &cells {
                if from.0.abs_diff(to.0) + from.1.abs_diff(to.1) == 1 {
                    tasks.push(Task {
                        start_m: Self::cell_center_m(from),
                        goal_m: Self::cell_center_m(to),
                    });
                }
            }
        }
        tasks
    }

    /// Noisy scripted segments between adjacent free cells, `steps` observations each.
    pub fn segments(&self, count: usize, steps: usize, noise: f32, seed: u64) -> Segments {
        let mut rng = StdRng::seed_from_u64(seed);
        let cells = self.free_cells();
        let mut out = Segments::default();
        for _ in 0..count {
            let from = cells[rng.random_range(0..cells.len())];
            let neighbours: Vec<_> = cells
                .iter()
                .copied()
                .filter(|c| c.0.abs_diff(from.0) + c.1.abs_diff(from.1) == 1)
                .collect();
            let to = neighbours[rng.random_range(0..neighbours.len())];
            let jitter = |rng: &mut StdRng| rng.random_range(-0.25..0.25);
            let mut p = Self::cell_center_m(from);
            p = [p[0] + jitter(&mut rng), p[1] + jitter(&mut rng)];
            let target = Self::cell_center_m(to);
            for t in 0..steps {
                let toward = [target[0] - p[0], target[1] - p[1]];
                let norm = (toward[0] * toward[0] + toward[1] * toward[1])
                    .sqrt()
                    .max(1e-6);
                let gain = (norm / STEP_SIZE_M).min(1.0) / norm;
                let action = [
                    (toward[0] * gain + noise * rng.random_range(-1.0..1.0)).clamp(-1.0, 1.0),
                    (toward[1] * gain + noise * rng.random_range(-1.0..1.0)).clamp(-1.0, 1.0),
                ];
                out.observations.extend_from_slice(&p);
                let last = t + 1 == steps;
                out.actions.extend_from_slice(&action);
                out.terminals.push(u8::from(last));
                p = self.step(p, action);
            }
        }
        out
    }

    /// Runs every task at once, `policy(positions, goals) -> actions` answering for all of them
    /// each step (one batched forward pass instead of one per task); a task stops moving when it
    /// reaches its goal. Returns which tasks reached their goal within `max_steps`.
    pub fn rollout_batch(
        &self,
        tasks: &[Task],
        max_steps: usize,
        mut policy: impl FnMut(&[[f32; 2]], &[[f32; 2]]) -> Vec<[f32; 2]>,
    ) -> Vec<bool> {
        let mut positions: Vec<[f32; 2]> = tasks.iter().map(|t| t.start_m).collect();
        let goals: Vec<[f32; 2]> = tasks.iter().map(|t| t.goal_m).collect();
        let mut reached = vec![false; tasks.len()];
        for _ in 0..max_steps {
            if reached.iter().all(|&r| r) {
                break;
            }
            let actions = policy(&positions, &goals);
            for (i, action) in actions.into_iter().enumerate().take(tasks.len()) {
                if reached[i] {
                    continue;
                }
                positions[i] = self.step(positions[i], action);
                reached[i] = distance_m(positions[i], goals[i]) < SUCCESS_RADIUS_M;
            }
        }
        reached
    }

    /// Runs `policy(obs, goal) -> action` from the task's start for at most `max_steps`; returns
    /// whether the goal was reached.
    pub fn rollout(
        &self,
        task: Task,
        max_steps: usize,
        mut policy: impl FnMut([f32; 2], [f32; 2]) -> [f32; 2],
    ) -> bool {
        let mut p = task.start_m;
        for _ in 0..max_steps {
            p = self.step(p, policy(p, task.goal_m));
            if distance_m(p, task.goal_m) < SUCCESS_RADIUS_M {
                return true;
            }
        }
        false
    }
}

impl Task {
    /// The same task with the start moved by up to `radius_m` on each axis (seeded).
    pub fn jittered(self, radius_m: f32, rng: &mut StdRng) -> Task {
        let mut start_m = self.start_m;
        for c in &mut start_m {
            *c += rng.random_range(-radius_m..=radius_m);
        }
        Task { start_m, ..self }
    }
}

impl Segments {
    /// The segments as a training dataset (one episode per segment).
    pub fn to_dataset(&self) -> Result<Dataset, DatasetError> {
        self.with_obs(Obs::State {
            data: self.observations.clone(),
            dim: 2,
        })
    }

    /// The segments with each position rendered by [`Maze::render_rgb`] at `side_px`.
    pub fn to_pixel_dataset(&self, maze: &Maze, side_px: usize) -> Result<Dataset, DatasetError> {
        let frames: Vec<u8> = self
            .observations
            .chunks_exact(2)
            .flat_map(|p| maze.render_rgb([p[0], p[1]], side_px))
            .collect();
        self.with_obs(Obs::Pixels {
            data: FrameBytes::from(frames),
            height: side_px,
            width: side_px,
            channels: 3,
        })
    }

    fn with_obs(&self, obs: Obs) -> Result<Dataset, DatasetError> {
        let terminals: Vec<bool> = self.terminals.iter().map(|&t| t != 0).collect();
        Dataset::new(obs, self.actions.clone(), 2, &terminals)
    }
}

/// Success rate of `agent`'s deployment action on `tasks`: `rollouts_per_task` rollouts each,
/// from starts jittered by up to `jitter_m` (seeded), all run as one batch.
pub fn success_rate(
    maze: &Maze,
    agent: &Agent,
    tasks: &[Task],
    rollouts_per_task: usize,
    jitter_m: f32,
    max_steps: usize,
    seed: u64,
) -> Result<f64, MqeError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let runs: Vec<Task> = tasks
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t, rollouts_per_task))
        .map(|t| t.jittered(jitter_m, &mut rng))
        .collect();
    let mut failure = None;
    let reached = maze.rollout_batch(&runs, max_steps, |positions, goals| {
        match act_batch(maze, agent, positions, goals) {
            Ok(actions) => actions,
            Err(e) => {
                failure.get_or_insert(e);
                vec![[0.0; 2]; positions.len()]
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(reached.iter().filter(|&&r| r).count() as f64 / runs.len().max(1) as f64)
}

/// The agent's actions, in the maze's units, for a batch of positions and goals, observed as
/// the agent's model expects (positions, or rendered images).
fn act_batch(
    maze: &Maze,
    agent: &Agent,
    positions: &[[f32; 2]],
    goals: &[[f32; 2]],
) -> Result<Vec<[f32; 2]>, MqeError> {
    let dev = agent.device();
    let n = positions.len();
    let observe = |points: &[[f32; 2]]| match agent.model_config().obs {
        ObsKind::Pixels { size_px, .. } => {
            let frames: Vec<u8> = points
                .iter()
                .flat_map(|&p| maze.render_rgb(p, size_px))
                .collect();
            Tensor::from_vec(frames, (n, size_px, size_px, 3), dev)
        }
        ObsKind::State { .. } => Tensor::from_slice(points.as_flattened(), (n, 2), dev),
    };
    let obs = observe(positions)?;
    let goal = observe(goals)?;
    let actions: Vec<f32> = agent.act(&obs, &goal)?.flatten_all()?.to_vec1()?;
    actions
        .chunks_exact(2)
        .map(|a| agent.action_norm().denormalise(a).map(|v| [v[0], v[1]]))
        .collect()
}

fn distance_m(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walls_block_the_direct_path() {
        let maze = Maze::new();
        let task = Maze::far_task();
        // Pushing straight right from the start never crosses the wall.
        assert!(!maze.rollout(task, 100, |_, _| [1.0, 0.0]));
    }

    #[test]
    fn the_far_task_is_solvable_around_the_wall() {
        let maze = Maze::new();
        let task = Maze::far_task();
        let waypoints = [
            Maze::cell_center_m((1, 1)),
            Maze::cell_center_m((1, 3)),
            task.goal_m,
        ];
        let mut next = 0;
        let reached = maze.rollout(task, 200, |p, _| {
            if distance_m(p, waypoints[next]) < 0.1 && next + 1 < waypoints.len() {
                next += 1;
            }
            let w = waypoints[next];
            [(w[0] - p[0]) / STEP_SIZE_M, (w[1] - p[1]) / STEP_SIZE_M]
        });
        assert!(reached);
    }

    #[test]
    fn batched_rollouts_agree_with_single_ones() {
        let maze = Maze::new();
        let [there, back] = Maze::far_tasks();
        let near = Task {
            start_m: Maze::cell_center_m((1, 1)),
            goal_m: Maze::cell_center_m((1, 2)),
        };
        let go_right = |p: &[[f32; 2]], _: &[[f32; 2]]| vec![[1.0, 0.0]; p.len()];
        assert_eq!(
            maze.rollout_batch(&[there, near, back], 50, go_right),
            [false, true, false]
        );
        assert!(maze.rollout(near, 50, |_, _| [1.0, 0.0]));
    }

    #[test]
    fn rendered_images_show_walls_and_where_the_agent_is() {
        let maze = Maze::new();
        let side = 20; // 4 px per 1 m cell
        let at = |rgb: &[u8], x: usize, y: usize| -> [u8; 3] {
            let i = (y * side + x) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        let p = Maze::cell_center_m((1, 1)); // centre at pixel (6, 6)
        let rgb = maze.render_rgb(p, side);
        assert_eq!(at(&rgb, 0, 0), WALL_RGB, "outer wall");
        assert_eq!(at(&rgb, 10, 10), WALL_RGB, "the wall between the arms");
        assert_eq!(at(&rgb, 6, 6)[0], 255, "the agent");
        assert_eq!(at(&rgb, 14, 6), [0, 0, 0], "free floor");
        // A fifth of a cell to the right changes the image: moves are visible below a pixel.
        let moved = maze.render_rgb([p[0] + 0.2, p[1]], side);
        assert_ne!(rgb, moved);
        // The agent's mass (red above green) moves right by about 0.2 m = 0.8 px.
        let centroid_x = |rgb: &[u8]| {
            let (mut mass, mut moment) = (0.0f32, 0.0f32);
            for (i, c) in rgb.chunks_exact(3).enumerate() {
                let w = f32::from(c[0]) - f32::from(c[1]);
                mass += w;
                moment += w * (i % side) as f32;
            }
            moment / mass
        };
        assert!(centroid_x(&moved) > centroid_x(&rgb) + 0.5);
    }

    #[test]
    fn pixel_segments_hold_one_rendered_frame_per_row() {
        let maze = Maze::new();
        let segments = maze.segments(5, 4, 0.2, 1);
        let data = segments.to_pixel_dataset(&maze, 16).unwrap();
        assert_eq!(data.len(), 20);
        assert_eq!(data.obs().row_shape(), [16, 16, 3]);
        let Obs::Pixels { data: frames, .. } = data.obs() else {
            panic!("pixels expected");
        };
        let third = [segments.observations[4], segments.observations[5]];
        assert_eq!(&frames[2 * 768..3 * 768], maze.render_rgb(third, 16));
    }

    #[test]
    fn near_tasks_are_the_twelve_one_cell_moves() {
        let tasks = Maze::new().near_tasks();
        assert_eq!(tasks.len(), 12);
        assert!(
            tasks
                .iter()
                .all(|t| (distance_m(t.start_m, t.goal_m) - 1.0).abs() < 1e-6)
        );
    }

    #[test]
    fn segments_become_one_episode_each() {
        let data = Maze::new().segments(30, 8, 0.2, 1).to_dataset().unwrap();
        assert_eq!((data.len(), data.num_episodes()), (240, 30));
        assert_eq!(data.transition_rows().len(), 30 * 7);
        let mut rng = StdRng::seed_from_u64(0);
        let task = Maze::far_task().jittered(0.2, &mut rng);
        assert!(distance_m(task.start_m, Maze::far_task().start_m) <= 0.2 * 2f32.sqrt() + 1e-6);
    }

    #[test]
    fn segments_never_span_more_than_one_cell_move() {
        let maze = Maze::new();
        let data = maze.segments(200, 10, 0.3, 7);
        assert_eq!(data.observations.len(), 200 * 10 * 2);
        assert_eq!(data.terminals.iter().filter(|&&t| t == 1).count(), 200);
        for segment in data.observations.chunks(20) {
            let (first, last) = ([segment[0], segment[1]], [segment[18], segment[19]]);
            assert!(distance_m(first, last) < 1.9, "{first:?} -> {last:?}");
            for p in segment.chunks(2) {
                assert!(!maze.blocked([p[0], p[1]]));
            }
        }
    }
}
