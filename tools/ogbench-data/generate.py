#!/usr/bin/env python3
"""Writes OGBench pointmaze datasets with OGBench's scripted noisy expert, in OGBench's file format.

    generate.py --env pointmaze-medium-v0 --dataset-type stitch --out data/pointmaze-medium-stitch-v0.npz
    generate.py --env pointmaze-large-v0 --dataset-type navigate --seed 1 --out pm-large-navigate.npz

The environment is OGBench's own (`ogbench` package), made as OGBench's data generation script makes
it: no termination at the goal, an episode is `--max-steps` steps. The expert is the one that script
uses for the point mass: each step it moves toward the next maze cell on a shortest path to the goal
(the environment's `get_oracle_subgoal`), as a unit vector, plus Gaussian noise of std `--noise`,
clipped to [-1, 1].

- navigate: start in any free cell, go to a random junction/corner cell ("vertex" cell), and on
  reaching it draw a new one, until the episode ends.
- stitch: start in any free cell and go to a cell exactly 4 maze steps away, then stay there.

Like OGBench's script, one run makes `--episodes` training episodes plus 10% more for validation,
and writes them to FILE.npz and FILE-val.npz (the validation file is the run's last episodes).
Keys: observations, actions, qpos, qvel (float32) and terminals (bool, true on each episode's last row).

Not for: ant or humanoid mazes (their expert is a trained SAC policy), or the pixel (visual-*) datasets.
"""

import argparse
import os
import sys
import time

PROG = "generate.py"

# The official commands (OGBench data_gen_scripts/commands.sh): (episodes, steps per episode).
OFFICIAL = {
    ("navigate", "medium"): (1000, 1001),
    ("navigate", "large"): (1000, 1001),
    ("navigate", "giant"): (500, 2001),
    ("navigate", "teleport"): (1000, 1001),
    ("stitch", "medium"): (5000, 201),
    ("stitch", "large"): (5000, 201),
    ("stitch", "giant"): (5000, 201),
    ("stitch", "teleport"): (5000, 201),
}
MAZES = ("medium", "large", "giant", "teleport")
STITCH_CELL_STEPS = 4  # stitch goals lie this many maze steps from the start cell


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def parse_args(argv):
    p = Parser(prog=PROG, description="Write an OGBench pointmaze dataset with OGBench's scripted noisy expert.")
    # The second spelling of each flag is the one of OGBench's generate_locomaze.py.
    p.add_argument("--env", "--env_name", dest="env", required=True, help="pointmaze-{medium,large,giant,teleport}-v0")
    p.add_argument(
        "--dataset-type", "--dataset_type", dest="dataset_type", required=True, choices=["navigate", "stitch"]
    )
    p.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian action noise (default 0.5)")
    p.add_argument(
        "--episodes",
        "--num_episodes",
        dest="episodes",
        type=int,
        default=None,
        help="training episodes (default: the official count, 5000 stitch, 1000 navigate, 500 giant navigate); "
        "10%% more are made for the -val file",
    )
    p.add_argument(
        "--max-steps",
        "--max_episode_steps",
        dest="max_steps",
        type=int,
        default=None,
        help="steps (rows) per episode (default: the official 201 stitch, 1001 navigate, 2001 giant navigate)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument(
        "--out", "--save_path", dest="out", required=True, help="output FILE.npz (FILE-val.npz is written too)"
    )
    args = p.parse_args(argv)

    parts = args.env.split("-")
    if len(parts) != 3 or parts[0] != "pointmaze" or parts[1] not in MAZES or parts[2] != "v0":
        p.error(f"--env {args.env}: expected pointmaze-{{{','.join(MAZES)}}}-v0 (the expert here is the point mass's)")
    episodes, steps = OFFICIAL[(args.dataset_type, parts[1])]
    args.episodes = episodes if args.episodes is None else args.episodes
    args.max_steps = steps if args.max_steps is None else args.max_steps
    if args.episodes < 1:
        p.error(f"--episodes must be at least 1, got {args.episodes}")
    if args.max_steps < 2:
        p.error(f"--max-steps must be at least 2, got {args.max_steps}")
    if args.noise < 0:
        p.error(f"--noise must be non-negative, got {args.noise}")
    if not 0 <= args.seed < 2**32:
        p.error(f"--seed must be in [0, 2^32), got {args.seed}")
    if not args.out.endswith(".npz"):
        p.error(f"--out {args.out}: the file name must end in .npz")
    return args


def maze_cells(maze_map):
    """Free cells, and the free cells that are not the middle of a straight corridor ("vertex" cells)."""
    free, vertex = [], []
    rows, cols = maze_map.shape
    for i in range(rows):
        for j in range(cols):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            open_ns = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0
            open_we = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0
            walled_ns = maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1
            walled_we = maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1
            if (open_ns and walled_we) or (open_we and walled_ns):
                continue  # corridor cell
            vertex.append((i, j))
    return free, vertex


def cells_at_distance(maze_map, start, distance):
    """Free cells exactly `distance` maze steps (4-neighbour moves) from `start`, in breadth-first order."""
    rows, cols = maze_map.shape
    dist = {start: 0}
    frontier = [start]
    found = []
    while frontier:
        nxt = []
        for i, j in frontier:
            for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
                n = (i + di, j + dj)
                if 0 <= n[0] < rows and 0 <= n[1] < cols and maze_map[n] == 0 and n not in dist:
                    dist[n] = dist[(i, j)] + 1
                    nxt.append(n)
                    if dist[n] == distance:
                        found.append(n)
        frontier = nxt
    return found


class Expert:
    """The scripted point-mass expert: unit vector toward the next cell on a shortest path to the goal."""

    def __init__(self, maze):
        self.maze = maze
        self._subgoals = {}  # (cell, goal cell) -> next cell's centre; the path search is the env's own

    def direction(self):
        import numpy as np

        xy = self.maze.get_xy()
        goal_xy = self.maze.cur_goal_xy
        key = (self.maze.xy_to_ij(xy), self.maze.xy_to_ij(goal_xy))
        subgoal = self._subgoals.get(key)
        if subgoal is None:
            subgoal, _ = self.maze.get_oracle_subgoal(xy, goal_xy)
            self._subgoals[key] = subgoal
        d = subgoal - xy
        return d / (np.linalg.norm(d) + 1e-6)


def generate(args):
    import numpy as np

    try:
        import gymnasium
        import ogbench.locomaze  # noqa: F401  (registers the maze environments)
    except ImportError as e:
        hint = "install tools/ogbench-eval/requirements.txt"
        raise SystemExit(f"{PROG}: error: cannot import ogbench ({e}); {hint}") from None

    env = gymnasium.make(args.env, terminate_at_goal=False, max_episode_steps=args.max_steps)
    maze = env.unwrapped
    maze_map = maze.maze_map
    free, vertex = maze_cells(maze_map)
    expert = Expert(maze)

    # OGBench's maze draws its start/goal noise and teleports from numpy's global generator, and so
    # does the script for the cells and the action noise: one seed makes the whole run reproducible.
    np.random.seed(args.seed)
    env.action_space.seed(args.seed)

    train_episodes = args.episodes
    val_episodes = args.episodes // 10
    total = train_episodes + val_episodes
    obs_dim = env.observation_space.shape[0]
    episodes = []
    started = time.monotonic()
    report_every = max(1, total // 10)
    for ep in range(total):
        init_ij = free[np.random.randint(len(free))]
        if args.dataset_type == "navigate":
            goal_ij = vertex[np.random.randint(len(vertex))]
        else:
            near = cells_at_distance(maze_map, init_ij, STITCH_CELL_STEPS)
            goal_ij = near[np.random.randint(len(near))] if near else init_ij
        reset_kwargs = dict(seed=args.seed) if ep == 0 else {}
        ob, _ = env.reset(options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)), **reset_kwargs)

        buf = dict(
            observations=np.empty((args.max_steps, obs_dim), np.float32),
            actions=np.empty((args.max_steps, 2), np.float32),
            terminals=np.zeros(args.max_steps, bool),
            qpos=np.empty((args.max_steps, maze.model.nq), np.float32),
            qvel=np.empty((args.max_steps, maze.model.nv), np.float32),
        )
        step = 0
        done = False
        while not done:
            action = expert.direction() + np.random.normal(0, args.noise, 2)
            action = np.clip(action, -1, 1)
            next_ob, _reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if info["success"] and args.dataset_type == "navigate":
                goal_ij = vertex[np.random.randint(len(vertex))]
                maze.set_goal(goal_ij)
            buf["observations"][step] = ob
            buf["actions"][step] = action
            buf["terminals"][step] = done
            buf["qpos"][step] = info["prev_qpos"]
            buf["qvel"][step] = info["prev_qvel"]
            ob = next_ob
            step += 1
        episodes.append({k: v[:step] for k, v in buf.items()})
        if (ep + 1) % report_every == 0 or ep + 1 == total:
            elapsed = time.monotonic() - started
            print(f"{PROG}: {ep + 1}/{total} episodes, {elapsed:.0f} s", file=sys.stderr, flush=True)
    env.close()

    val_path = args.out[: -len(".npz")] + "-val.npz"
    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    for path, part in ((args.out, episodes[:train_episodes]), (val_path, episodes[train_episodes:])):
        if not part:
            print(
                f"{PROG}: {train_episodes} training episodes give no validation episode: {path} not written",
                file=sys.stderr,
            )
            continue
        arrays = {k: np.concatenate([e[k] for e in part]) for k in part[0]}
        np.savez_compressed(path, **arrays)
        print(
            f"{PROG}: wrote {path}: {len(part)} episodes, {len(arrays['terminals'])} rows",
            file=sys.stderr,
        )
    elapsed = time.monotonic() - started
    rows = sum(len(e["terminals"]) for e in episodes)
    print(f"{PROG}: {rows} steps in {elapsed:.1f} s ({1e6 * elapsed / rows:.0f} us per step)", file=sys.stderr)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    generate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
