#!/usr/bin/env python3
"""Scores a checkpoint in an OGBench environment, following OGBench's evaluation protocol.

The policy runs in the project's `policy-server` (a subprocess speaking JSON lines on
stdin/stdout); the environment, its five evaluation tasks and the success test are OGBench's own
code (`ogbench.make_env_and_datasets(name, env_only=True)`, which downloads nothing).

    evaluate.py --checkpoint DIR --env pointmaze-medium-stitch-v0 [--episodes 50]
                [--tasks 1,2,3,4,5] [--server target/release/policy-server]
                [--json OUT.json] [--seed 0]

Per task: `env.reset(options=dict(task_id=..., render_goal=False))`, the goal is `info['goal']`,
the deterministic action is clipped to [-1, 1] before `env.step`, the episode ends on
`terminated or truncated` and it succeeded when `info['success']` at its last step says so.
Prints a markdown table (stdout) and, with --json, writes a record of the scores.
Exit status 0 when the evaluation ran, whatever the success; otherwise non-zero with a one-line
error as the last line on stderr.

Not for: training, or OGBench's single-task (reward) environments.
"""

import argparse
import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time

PROG = "evaluate.py"
DEFAULT_SERVER = "target/release/policy-server"
# The first answer waits for the checkpoint to load; later answers take milliseconds.
FIRST_ANSWER_TIMEOUT_S = 600.0
ANSWER_TIMEOUT_S = 120.0


class BadInput(Exception):
    """Wrong arguments, checkpoint, environment or server path: exit status 2."""


class EvalFailed(Exception):
    """The evaluation could not run to the end (server died or answered an error): exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, so that callers that keep the last stderr line get the whole reason.
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def parse_args(argv):
    p = Parser(
        prog=PROG,
        description="Score a checkpoint in an OGBench environment through policy-server, "
        "following OGBench's evaluation protocol.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (the --out of bridge-train fit)")
    p.add_argument("--env", required=True, help="OGBench dataset/environment name, e.g. pointmaze-medium-stitch-v0")
    p.add_argument("--episodes", type=int, default=50, help="episodes per task (default 50, as OGBench's runs)")
    p.add_argument("--tasks", default=None, help="comma-separated task ids, e.g. 1,3 (default: all of the env's tasks)")
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"policy-server binary (default {DEFAULT_SERVER})")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the scores as a JSON record here")
    p.add_argument("--seed", type=int, default=0, help="seed of the environment resets (default 0)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"--episodes must be at least 1, got {args.episodes}")
    if args.seed < 0:
        p.error(f"--seed must be non-negative, got {args.seed}")
    return args


def parse_tasks(text, num_tasks, env_name):
    if text is None:
        return list(range(1, num_tasks + 1))
    tasks = []
    for part in text.split(","):
        part = part.strip()
        try:
            task = int(part)
        except ValueError:
            raise BadInput(f"--tasks {text!r}: {part!r} is not a task id (expected e.g. 1,2,5)") from None
        if not 1 <= task <= num_tasks:
            raise BadInput(f"--tasks {text!r}: {env_name} has tasks 1 to {num_tasks}, not {task}")
        if task not in tasks:
            tasks.append(task)
    return tasks


def make_env(name):
    """OGBench's environment for the dataset name `name`, as OGBench's own training script makes it."""
    if "singletask" in name.split("-"):
        raise BadInput(
            f"{name}: single-task (reward) environments are not goal-conditioned; use the goal-conditioned name"
        )
    if name.startswith("visual-"):
        # Pixel observations need an off-screen OpenGL context (OGBench's README suggests EGL).
        os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import numpy  # noqa: F401
        import ogbench
    except ImportError as e:
        raise BadInput(f"cannot import ogbench ({e}); install tools/ogbench-eval/requirements.txt") from None
    import gymnasium
    from gymnasium.spaces import Box

    try:
        env = ogbench.make_env_and_datasets(name, env_only=True)
    except gymnasium.error.Error as e:  # NameNotFound, VersionNotFound, ...: not a registered name
        raise BadInput(
            f"unknown OGBench environment {name!r} (expected a dataset name such as "
            f"pointmaze-medium-stitch-v0): {one_line(e)}"
        ) from None
    except Exception as e:  # the environment exists but could not start (e.g. no OpenGL for pixels)
        raise BadInput(f"cannot make the OGBench environment {name!r}: {type(e).__name__}: {one_line(e)}") from None

    if not isinstance(env.action_space, Box):
        raise BadInput(
            f"{name}: action space {env.action_space} is not continuous; policy-server gives continuous actions"
        )
    if not hasattr(env.unwrapped, "task_infos"):
        raise BadInput(f"{name}: the environment has no evaluation tasks (task_infos)")
    return env


def one_line(error):
    text = " ".join(str(error).split())
    return text or type(error).__name__


class PolicyServer:
    """`policy-server CHECKPOINT` as a child process: one JSON request line in, one answer line out."""

    def __init__(self, server, checkpoint):
        self.server = server
        self.checkpoint = checkpoint
        child_env = dict(os.environ)
        child_env.setdefault("RUST_LIB_BACKTRACE", "0")  # errors as one message, not a stack dump
        try:
            self.proc = subprocess.Popen(
                [server, checkpoint],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
                env=child_env,
            )
        except OSError as e:
            raise BadInput(f"cannot start policy-server {server}: {e}") from None
        self.answers = queue.Queue()
        self.stderr_lines = collections.deque(maxlen=200)
        self.answered = False
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.answers.put(line)
        self.answers.put(None)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
            # Pass the server's own log lines on, so that a user sees which checkpoint and device.
            sys.stderr.write(line if line.startswith("policy-server") else f"policy-server| {line}")
            sys.stderr.flush()

    def query(self, obs, goal):
        """The answer object to {"obs": obs, "goal": goal}; raises on an error answer or a dead server."""
        line = json.dumps({"obs": obs, "goal": goal}, separators=(",", ":")) + "\n"
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        timeout = ANSWER_TIMEOUT_S if self.answered else FIRST_ANSWER_TIMEOUT_S
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise EvalFailed(
                f"policy-server {self.server} gave no answer within {timeout:.0f} s (checkpoint {self.checkpoint})"
            ) from None
        if answer is None:
            raise self._died()
        self.answered = True
        try:
            parsed = json.loads(answer)
        except ValueError:
            raise EvalFailed(
                f"policy-server {self.server} answered a line that is not JSON: {answer[:200]!r}"
            ) from None
        if not isinstance(parsed, dict):
            raise EvalFailed(f"policy-server {self.server} answered {answer[:200]!r}, not a JSON object")
        if "error" in parsed:
            raise ServerAnswerError(str(parsed["error"]))
        if not isinstance(parsed.get("action"), list):
            raise EvalFailed(f"policy-server {self.server} answered without an action: {answer[:200]!r}")
        return parsed

    def _died(self):
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        self._err.join(timeout=5)
        reason = self._error_text()
        status = "closed its output" if code is None else f"exited with status {code}"
        return EvalFailed(
            f"policy-server {self.server} {status} (checkpoint {self.checkpoint})" + (f": {reason}" if reason else "")
        )

    def _error_text(self):
        """The server's error message on one line (its log lines and any backtrace left out)."""
        lines = []
        for line in self.stderr_lines:
            if line.strip().startswith("Stack backtrace:"):
                break
            if line.startswith("policy-server:") or not line.strip():
                continue
            lines.append(line.strip())
        return " ".join(lines)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # end of input: the server returns
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.join(timeout=5)
        self._err.join(timeout=5)


class ServerAnswerError(Exception):
    """policy-server answered {"error": ...}."""


def to_json_values(x):
    """An observation as the protocol wants it: floats for states, integers 0..=255 for pixels."""
    import numpy as np

    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return arr.reshape(-1).astype(int).tolist()
    return arr.reshape(-1).astype(float).tolist()


def episode_seed(seed, task_id, episode):
    """One seed per (seed, task, episode): an episode replays alike whatever --tasks/--episodes ran before it."""
    import numpy as np

    return int(np.random.SeedSequence([seed, task_id, episode]).generate_state(1)[0])


def run_episode(env, server, task_id, seed, env_name, checkpoint):
    """One OGBench evaluation episode; returns (success, steps)."""
    import numpy as np

    # OGBench draws the start and goal noise (and teleports) from numpy's global generator, and the
    # simulator's reset noise from the env's own: seed both.
    np.random.seed(seed)
    env.action_space.seed(seed)
    observation, info = env.reset(seed=seed, options=dict(task_id=task_id, render_goal=False))
    goal = info.get("goal")
    if goal is None:
        raise BadInput(f"{env_name}: env.reset gives no info['goal'] for task {task_id}")
    goal_values = to_json_values(goal)
    action_shape = env.action_space.shape
    done = False
    steps = 0
    while not done:
        try:
            answer = server.query(to_json_values(observation), goal_values)
        except ServerAnswerError as e:
            shape = f"observations of shape {tuple(np.shape(observation))}, {np.asarray(observation).dtype}"
            if "this checkpoint expects" in str(e):
                raise EvalFailed(
                    f"checkpoint {checkpoint} does not fit {env_name} ({shape}): policy-server says {e}"
                ) from None
            raise EvalFailed(
                f"policy-server answered an error for checkpoint {checkpoint} on {env_name} ({shape}): {e}"
            ) from None
        action = np.asarray(answer["action"], dtype=np.float64)
        if action.size != int(np.prod(action_shape)):
            raise EvalFailed(
                f"checkpoint {checkpoint} gives actions of {action.size} values; {env_name} takes "
                f"{int(np.prod(action_shape))}"
            )
        action = np.clip(action.reshape(action_shape), -1.0, 1.0).astype(env.action_space.dtype)
        observation, _reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        steps += 1
    return bool(info["success"]), steps


def render_table(record, mean_steps):
    lines = [
        f"OGBench evaluation: {record['env']}, checkpoint {record['checkpoint']}, "
        f"{record['episodes_per_task']} episode(s) per task, seed {record['seed']}",
        "",
        "| task | successes/episodes | success % | mean steps |",
        "|---:|---:|---:|---:|",
    ]
    for task, steps in zip(record["tasks"], mean_steps, strict=True):
        lines.append(
            f"| {task['task_id']} | {task['successes']}/{task['episodes']} | "
            f"{100 * task['success_rate']:.1f} | {steps:.0f} |"
        )
    lines.append(f"| mean | | {100 * record['mean_success']:.1f} | |")
    return "\n".join(lines)


def evaluate(args):
    started = time.monotonic()
    checkpoint = args.checkpoint
    if not os.path.isdir(checkpoint):
        raise BadInput(f"checkpoint directory {checkpoint} does not exist")
    if not os.path.isfile(args.server):
        raise BadInput(
            f"policy-server binary {args.server} does not exist "
            "(build it: cargo build --release -p policy-server, or pass --server)"
        )
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise BadInput(
            f"--json {args.json}: the directory {os.path.dirname(os.path.abspath(args.json))} does not exist"
        )
    env = make_env(args.env)
    num_tasks = len(env.unwrapped.task_infos)
    tasks = parse_tasks(args.tasks, num_tasks, args.env)

    server = PolicyServer(args.server, checkpoint)
    results = []
    mean_steps = []
    total_episodes = 0
    total_steps = 0
    try:
        for task_id in tasks:
            task_start = time.monotonic()
            successes = 0
            steps_sum = 0
            for episode in range(args.episodes):
                seed = episode_seed(args.seed, task_id, episode)
                success, steps = run_episode(env, server, task_id, seed, args.env, checkpoint)
                successes += int(success)
                steps_sum += steps
            total_episodes += args.episodes
            total_steps += steps_sum
            results.append(
                dict(
                    task_id=task_id,
                    successes=successes,
                    episodes=args.episodes,
                    success_rate=successes / args.episodes,
                )
            )
            mean_steps.append(steps_sum / args.episodes)
            elapsed = time.monotonic() - task_start
            print(
                f"{PROG}: task {task_id}: {successes}/{args.episodes} "
                f"({100 * successes / args.episodes:.0f}%), {steps_sum / args.episodes:.0f} steps per episode, "
                f"{elapsed:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        server.close()
        env.close()

    wall_s = time.monotonic() - started
    record = dict(
        env=args.env,
        checkpoint=checkpoint,
        episodes_per_task=args.episodes,
        tasks=results,
        mean_success=sum(t["success_rate"] for t in results) / len(results),
        wall_s=round(wall_s, 3),
        seed=args.seed,
    )
    print(render_table(record, mean_steps))
    print(
        f"\nwall {wall_s:.1f} s: {wall_s / total_episodes:.2f} s per episode, "
        f"{1e3 * wall_s / max(total_steps, 1):.2f} ms per step ({total_steps} steps)"
    )
    if args.json:
        tmp = f"{args.json}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=2)
                f.write("\n")
            os.replace(tmp, args.json)
        except OSError as e:
            raise EvalFailed(f"cannot write the JSON record {args.json}: {e}") from None
    return record


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        evaluate(args)
    except BadInput as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except EvalFailed as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
