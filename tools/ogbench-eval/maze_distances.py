#!/usr/bin/env python3
"""Does a checkpoint's learned distance know the maze's walls?

Queries the learned temporal distance d(s, g) of an MQE checkpoint (through `policy-server`) between
the centres of every pair of open cells of an OGBench pointmaze, and compares it with the maze's
shortest-path length (BFS over cells, as OGBench's oracle computes it) and with the straight-line
distance. For each evaluation task it also follows the learned distance downhill cell by cell from
the start (at each cell, the open neighbour with the smallest d to the goal) and says whether that
walk reaches the goal and by how many cells.

Usage:
    maze_distances.py --checkpoint DIR --env pointmaze-medium-stitch-v0 [--server target/release/policy-server] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from collections import deque

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--server", default="target/release/policy-server")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


class Server:
    def __init__(self, path, checkpoint):
        self.proc = subprocess.Popen([path, checkpoint], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def distance(self, obs, goal):
        self.proc.stdin.write(json.dumps({"obs": list(map(float, obs)), "goal": list(map(float, goal))}) + "\n")
        answer = json.loads(self.proc.stdout.readline())
        if "error" in answer:
            sys.exit(f"policy-server: {answer['error']}")
        if answer.get("distance") is None:
            sys.exit("this checkpoint has no critic (GCBC): nothing to probe")
        return float(answer["distance"])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def bfs(maze, start):
    dist = {start: 0}
    queue = deque([start])
    while queue:
        i, j = queue.popleft()
        for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
            n = (i + di, j + dj)
            if maze[n] == 0 and n not in dist:
                dist[n] = dist[(i, j)] + 1
                queue.append(n)
    return dist


def ranks(x):
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    return r


def spearman(a, b):
    return float(np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1])


def neighbours(maze, cell):
    i, j = cell
    return [(i + di, j + dj) for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)) if maze[i + di, j + dj] == 0]


def main():
    args = parse_args(sys.argv[1:])
    import ogbench

    env = ogbench.make_env_and_datasets(args.env, env_only=True)
    maze_env = env.unwrapped
    maze = np.asarray(maze_env.maze_map)
    cells = [tuple(c) for c in np.argwhere(maze == 0)]
    server = Server(args.server, args.checkpoint)
    xy = {c: np.asarray(maze_env.ij_to_xy(c)) for c in cells}
    learned = {(a, b): server.distance(xy[a], xy[b]) for a, b in itertools.product(cells, cells) if a != b}
    shortest = {c: bfs(maze, c) for c in cells}
    pairs = list(learned)
    d = [learned[p] for p in pairs]
    path = [shortest[a][b] for a, b in pairs]
    straight = [float(np.abs(np.subtract(a, b)).sum()) for a, b in pairs]
    # Pairs where a wall makes the way much longer than the straight line.
    detour = [p for p, s, m in zip(pairs, path, straight) if s >= m + 4]
    direct = [p for p, s, m in zip(pairs, path, straight) if s == m]

    # Greedy descent of the learned distance, per cell and goal: does the next cell lie on a shortest path?
    on_path = total = 0
    for a, b in pairs:
        nxt = min(neighbours(maze, a) + [a], key=lambda n: 0.0 if n == b else learned.get((n, b), np.inf))
        total += 1
        on_path += int(shortest[nxt][b] == shortest[a][b] - 1)

    tasks = []
    for info in maze_env.task_infos:
        start, goal = tuple(info["init_ij"]), tuple(info["goal_ij"])
        walk, cell = [start], start
        while cell != goal and len(walk) <= 3 * len(cells):
            cell = min(neighbours(maze, cell), key=lambda n: 0.0 if n == goal else learned[(n, goal)])
            if cell in walk:
                walk.append(cell)
                break
            walk.append(cell)
        tasks.append(dict(task=info["task_name"], start=start, goal=goal, shortest=shortest[start][goal],
                          learned_start_goal=learned[(start, goal)], greedy_reaches=walk[-1] == goal,
                          greedy_walk=[list(map(int, c)) for c in walk]))

    record = dict(
        env=args.env, checkpoint=args.checkpoint, cells=len(cells), pairs=len(pairs),
        spearman_learned_vs_shortest_path=spearman(d, path),
        spearman_learned_vs_straight_line=spearman(d, straight),
        mean_learned_over_shortest_detour=float(np.mean([learned[p] / shortest[p[0]][p[1]] for p in detour])),
        mean_learned_over_shortest_direct=float(np.mean([learned[p] / shortest[p[0]][p[1]] for p in direct])),
        greedy_step_on_a_shortest_path=on_path / total,
        tasks=tasks,
    )
    server.close()
    print(f"{args.env} {args.checkpoint}: {len(cells)} cells, {len(pairs)} ordered pairs")
    print(f"  rank correlation of the learned distance with the shortest path: {record['spearman_learned_vs_shortest_path']:.3f}, "
          f"with the straight line: {record['spearman_learned_vs_straight_line']:.3f}")
    print(f"  learned / shortest path: {record['mean_learned_over_shortest_detour']:.4f} where a wall forces a detour "
          f"(>= 4 cells), {record['mean_learned_over_shortest_direct']:.4f} where the way is straight")
    print(f"  one greedy step down the learned distance lies on a shortest path in {100 * on_path / total:.1f}% of (cell, goal) pairs")
    for t in tasks:
        print(f"  {t['task']}: {t['start']} -> {t['goal']} (shortest {t['shortest']} cells): greedy walk "
              f"{'reaches the goal' if t['greedy_reaches'] else 'stops'} after {len(t['greedy_walk']) - 1} cells "
              f"{[tuple(c) for c in t['greedy_walk']]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
