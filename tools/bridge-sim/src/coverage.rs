//! `bridge-sim coverage`: how often the gripper position of each task's goal image occurs in
//! training data as the future of another frame.
//!
//! A goal the critic has never been trained toward cannot be ranked, so before training on play
//! data, check that its futures contain the goals you will ask for. Reads the states of a
//! `bridge-train prepare` cache (Bridge state: gripper x, y, z first) and counts, per task, the
//! frames after the first of an episode (the ones that are some earlier frame's future) whose
//! gripper lies within `--radius-m` of the task's `goal_ee_xyz_m`, and the episodes with at
//! least one such frame. Block positions are not in the recorded state, so only the arm's part
//! of the goal is counted.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use bridge_data::cache::Cache;
use widowx_sim::tasks::TaskFile;

/// Entries per row of a Bridge state.
const STATE_DIM: usize = 7;

#[derive(Debug, clap::Args)]
pub struct CoverageArgs {
    /// A training cache (`bridge-train prepare --out`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The task file whose goals are looked for.
    #[arg(long, value_name = "FILE")]
    pub tasks: PathBuf,
    /// A frame matches a goal with its gripper this close to the goal's, m.
    #[arg(long, default_value_t = 0.02)]
    pub radius_m: f64,
}

/// How often one goal position occurs as a future.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub future_frames: u64,
    pub matching_frames: u64,
    pub episodes: u64,
    pub matching_episodes: u64,
}

/// Counts the frames (after each episode's first) within `radius_m` of `goal_xyz_m`.
/// `states` holds [`STATE_DIM`] entries per row; `episodes` are (first row, rows).
pub fn coverage(
    states: &[f32],
    episodes: &[(u64, u64)],
    goal_xyz_m: [f64; 3],
    radius_m: f64,
) -> Coverage {
    let mut result = Coverage {
        future_frames: 0,
        matching_frames: 0,
        episodes: episodes.len() as u64,
        matching_episodes: 0,
    };
    for &(first, rows) in episodes {
        let mut matched = 0;
        for row in first + 1..first + rows {
            let at = &states[row as usize * STATE_DIM..][..3];
            let d2: f64 = (0..3)
                .map(|i| (f64::from(at[i]) - goal_xyz_m[i]).powi(2))
                .sum();
            matched += u64::from(d2 <= radius_m * radius_m);
        }
        result.future_frames += rows.saturating_sub(1);
        result.matching_frames += matched;
        result.matching_episodes += u64::from(matched > 0);
    }
    result
}

pub fn run(args: CoverageArgs) -> anyhow::Result<()> {
    let tasks = TaskFile::load(&args.tasks)
        .with_context(|| format!("task file {}", args.tasks.display()))?;
    let cache = Cache::open(&args.data)
        .with_context(|| format!("opening training cache {}", args.data.display()))?;
    let states = cache.states();
    let episodes: Vec<(u64, u64)> = cache
        .trajectories()
        .iter()
        .map(|t| (t.first_row, t.rows))
        .collect();
    if states.len() < cache.trajectories().iter().map(|t| t.rows).sum::<u64>() as usize * STATE_DIM
    {
        anyhow::bail!(
            "training cache {}: the states file is shorter than its trajectories say",
            args.data.display()
        );
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "data: {} ({} episodes); a frame matches with its gripper within {:.0} cm of the goal's\n",
        args.data.display(),
        episodes.len(),
        args.radius_m * 100.0
    );
    let _ = writeln!(
        table,
        "| task | tier | goal gripper xyz (m) | matching future frames | episodes reaching it |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|");
    for task in &tasks.tasks {
        let goal = task.goal_ee_xyz_m.unwrap_or(tasks.goal_ee_xyz_m);
        let c = coverage(states, &episodes, goal, args.radius_m);
        let _ = writeln!(
            table,
            "| {} | {} | [{:.3}, {:.3}, {:.3}] | {:.2}% ({}/{}) | {:.1}% ({}/{}) |",
            task.name,
            task.tier().label(),
            goal[0],
            goal[1],
            goal[2],
            100.0 * c.matching_frames as f64 / c.future_frames.max(1) as f64,
            c.matching_frames,
            c.future_frames,
            100.0 * c.matching_episodes as f64 / c.episodes.max(1) as f64,
            c.matching_episodes,
            c.episodes
        );
    }
    print!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(x: f32, y: f32, z: f32) -> [f32; STATE_DIM] {
        [x, y, z, 0.0, 0.0, 0.0, 1.0]
    }

    #[test]
    fn counts_only_futures_within_the_radius() {
        // Episode 0 starts at the goal (not a future) and then leaves; episode 1 reaches it at
        // its third frame and 1.5 cm off at its fourth; episode 2 passes 3 cm away.
        let rows = [
            state(0.3, 0.0, 0.15),
            state(0.2, 0.0, 0.15),
            state(0.25, 0.1, 0.1),
            state(0.27, 0.05, 0.12),
            state(0.3, 0.0, 0.15),
            state(0.3, 0.015, 0.15),
            state(0.3, 0.03, 0.15),
            state(0.33, 0.0, 0.15),
        ];
        let states: Vec<f32> = rows.iter().flatten().copied().collect();
        let episodes = [(0, 2), (2, 4), (6, 2)];
        let c = coverage(&states, &episodes, [0.3, 0.0, 0.15], 0.02);
        assert_eq!(
            c,
            Coverage {
                future_frames: 5,
                matching_frames: 2,
                episodes: 3,
                matching_episodes: 1,
            }
        );
    }
}
