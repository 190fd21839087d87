#!/usr/bin/env python3
"""Independent JAX/XLA reference for ONE MQE training step (docs/mqe.md sections 3-6).

What it is for: measuring the CPU time of one jitted MQE step (critic loss over all B x B pairs,
DDPG+BC actor loss against a frozen critic, one Adam update) so the Rust/candle trainer has a number
to beat on the same machine, and dumping inputs/parameters/losses/gradients to an .npz file so the
Rust implementation can be checked numerically against it.

What it is not for: training. Data are random tensors made in memory; the batch sampler and the
pixel random-crop augmentation (section 2) are not part of the timed step.

Examples:
    python mqe_step.py --config state --steps 20
    python mqe_step.py --config pixel --steps 10
    python mqe_step.py --config pixel-act --steps 200
    python mqe_step.py --config state --batch 8 --dump /tmp/mqe_state_b8.npz   # numeric cross-check
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["state", "pixel", "pixel-act"], required=True)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 state, 10 pixel, 200 pixel-act)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
    parser.add_argument("--batch", type=int, default=None, help="override the batch size (256 state, 64 pixel, 1 pixel-act)")
    parser.add_argument("--threads", type=int, default=None,
                        help="restrict the process to this many CPUs (sched_setaffinity before importing jax; "
                             "XLA sizes its thread pools from the affinity mask). Default: all CPUs")
    parser.add_argument("--recompute-actor-encoders", action="store_true",
                        help="pixel only: recompute enc_phi(s) and enc_psi(g_pi) inside the actor loss, as the "
                             "released code does, instead of reusing the critic pass's (stop-gradient) features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dump", default=None, help="write params, batch, metrics, grads and updated params to this .npz")
    parser.add_argument("--fixture", action="store_true",
                        help="small networks for a committed cross-check fixture: latent 32, hidden [32, 32], "
                             "actor [32, 32], 16x16 images, action dim 3 (pixel); the dump leaves out the "
                             "updated parameters. Sizes are also set one by one with the flags below")
    parser.add_argument("--latent", type=int, default=None, help="latent and pixel-encoder output width (512)")
    parser.add_argument("--hidden", type=int, default=None, help="width of every phi/psi/actor hidden layer (512)")
    parser.add_argument("--layers", type=int, default=None, help="hidden layers per MLP (3)")
    parser.add_argument("--image-size", type=int, default=None, help="pixel: image side in pixels (64)")
    parser.add_argument("--action-dim", type=int, default=None, help="action dimension (2 state, 7 pixel)")
    args = parser.parse_args(argv)
    if args.fixture:
        small = dict(latent=32, hidden=32, layers=2, image_size=16, action_dim=3 if args.config != "state" else 2)
        for name, value in small.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    return args


ARGS = parse_args(sys.argv[1:])
if ARGS.threads is not None:
    # Must happen before jax/XLA start their thread pools.
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: ARGS.threads]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sg = jax.lax.stop_gradient

# ---------------------------------------------------------------------------------------------
# Configuration (docs/mqe.md DEFAULTs; only settings that change the step's arithmetic are here).
# ---------------------------------------------------------------------------------------------
LATENT = ARGS.latent or 512
HIDDEN = (ARGS.hidden or 512,) * (ARGS.layers or 3)
ACTOR_HIDDEN = HIDDEN
ENSEMBLE = 2
MRN_COMPONENTS = 8
EDGE_EXP_CLIP = 5.0
ALPHA = 0.1
LR = 3e-4
IMPALA_CHANNELS = (16, 32, 32)
IMPALA_BLOCKS = 1  # impala-small


def config_values(name: str) -> dict:
    if name == "state":
        return dict(pixel=False, obs_dim=2, action_dim=ARGS.action_dim or 2, batch=256, gamma=0.995)
    side = ARGS.image_size or 64
    return dict(pixel=True, obs_shape=(side, side, 3), action_dim=ARGS.action_dim or 7,
                batch=64 if name == "pixel" else 1, gamma=0.98)


# ---------------------------------------------------------------------------------------------
# Initialisers and layers
# ---------------------------------------------------------------------------------------------
def glorot_uniform(key, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


def init_dense(key, n_in, n_out, scale=1.0):
    return {"kernel": scale * glorot_uniform(key, (n_in, n_out), n_in, n_out), "bias": jnp.zeros((n_out,), jnp.float32)}


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def init_layer_norm(n):
    return {"scale": jnp.ones((n,), jnp.float32), "bias": jnp.zeros((n,), jnp.float32)}


def layer_norm(p, x, eps=1e-6):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def gelu(x):
    return jax.nn.gelu(x, approximate=True)


def init_mlp(key, n_in, hidden, n_out):
    """MLP(h1,h2,h3 -> out): Dense -> GELU -> LayerNorm per hidden layer, then a plain Dense."""
    keys = jax.random.split(key, len(hidden) + 1)
    layers, width = [], n_in
    for k, h in zip(keys[:-1], hidden):
        layers.append({"dense": init_dense(k, width, h), "norm": init_layer_norm(h)})
        width = h
    return {"hidden": layers, "out": init_dense(keys[-1], width, n_out)}


def mlp(p, x):
    for layer in p["hidden"]:
        x = layer_norm(layer["norm"], gelu(dense(layer["dense"], x)))
    return dense(p["out"], x)


def init_ensemble_mlp(key, n_in):
    """ENSEMBLE independent members, stacked on a leading axis."""
    return jax.vmap(lambda k: init_mlp(k, n_in, HIDDEN, LATENT))(jax.random.split(key, ENSEMBLE))


def ensemble_mlp(p, x):
    """Shared input x [N, d] -> [E, N, LATENT]."""
    return jax.vmap(mlp, in_axes=(0, None))(p, x)


# --- IMPALA encoder --------------------------------------------------------------------------
def init_conv(key, c_in, c_out):
    fan_in, fan_out = 9 * c_in, 9 * c_out
    return {"kernel": glorot_uniform(key, (3, 3, c_in, c_out), fan_in, fan_out), "bias": jnp.zeros((c_out,), jnp.float32)}


def conv(p, x):
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def max_pool_3x3_s2_same(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")


def init_impala(key, c_in, spatial):
    stacks, c = [], c_in
    for channels in IMPALA_CHANNELS:
        key, k_conv = jax.random.split(key)
        blocks = []
        for _ in range(IMPALA_BLOCKS):
            key, k1, k2 = jax.random.split(key, 3)
            blocks.append({"conv1": init_conv(k1, channels, channels), "conv2": init_conv(k2, channels, channels)})
        stacks.append({"conv": init_conv(k_conv, c, channels), "blocks": blocks})
        c = channels
        spatial = (spatial + 1) // 2
    key, k_out = jax.random.split(key)
    return {"stacks": stacks, "out": init_dense(k_out, spatial * spatial * c, LATENT)}


def impala(p, images_u8):
    x = images_u8.astype(jnp.float32) / 255.0
    for stack in p["stacks"]:
        x = max_pool_3x3_s2_same(conv(stack["conv"], x))
        for block in stack["blocks"]:
            y = conv(block["conv1"], jax.nn.relu(x))
            x = x + conv(block["conv2"], jax.nn.relu(y))
    x = jax.nn.relu(x).reshape(x.shape[0], -1)
    return gelu(dense(p["out"], x))


# --- actor -----------------------------------------------------------------------------------
def init_actor(key, n_in, action_dim):
    keys = jax.random.split(key, len(ACTOR_HIDDEN) + 1)
    layers, width = [], n_in
    for k, h in zip(keys[:-1], ACTOR_HIDDEN):
        layers.append(init_dense(k, width, h))
        width = h
    return {"hidden": layers, "mean": init_dense(keys[-1], width, action_dim, scale=0.01)}


def actor_mlp(p, x):
    for layer in p["hidden"]:
        x = gelu(dense(layer, x))
    return dense(p["mean"], x)


# ---------------------------------------------------------------------------------------------
# MRN quasimetric
# ---------------------------------------------------------------------------------------------
def mrn(x, y):
    """d(x, y) over the last axis (LATENT); broadcasting over leading axes.

    Each chunk's asymmetric and symmetric halves are sliced from x and y BEFORE the broadcast
    subtraction: the same arithmetic as slicing x - y, but XLA then never builds the full pairwise
    [.., LATENT] difference in the forward pass (7x faster forward at B=256 on this machine).
    """
    shape = (MRN_COMPONENTS, 2, LATENT // MRN_COMPONENTS // 2)
    xc = x.reshape(x.shape[:-1] + shape)
    yc = y.reshape(y.shape[:-1] + shape)
    asym = jax.nn.relu(jnp.max(xc[..., 0, :] - yc[..., 0, :], axis=-1))
    sym = jnp.sqrt(jnp.sum(jnp.square(xc[..., 1, :] - yc[..., 1, :]), axis=-1) + 1e-12)
    return jnp.mean(asym + sym, axis=-1) / np.sqrt(LATENT)


# ---------------------------------------------------------------------------------------------
# Parameters and batches
# ---------------------------------------------------------------------------------------------
def init_params(key, cfg):
    k_phi, k_psi, k_pi, k_ephi, k_epsi, k_epi = jax.random.split(key, 6)
    a_dim = cfg["action_dim"]
    if cfg["pixel"]:
        h, w, c = cfg["obs_shape"]
        enc = {"phi": init_impala(k_ephi, c, h), "psi": init_impala(k_epsi, c, h), "pi": init_impala(k_epi, 2 * c, h)}
        feat = LATENT
        actor_in = LATENT
    else:
        enc = {}
        feat = cfg["obs_dim"]
        actor_in = 2 * cfg["obs_dim"]
    return {
        "enc": enc,
        "phi": init_ensemble_mlp(k_phi, feat + a_dim),
        "psi": init_ensemble_mlp(k_psi, feat),
        "actor": init_actor(k_pi, actor_in, a_dim),
    }


def random_batch(key, cfg, batch):
    keys = jax.random.split(key, 8)
    if cfg["pixel"]:
        shape = (batch,) + cfg["obs_shape"]
        obs = lambda k: jax.random.randint(k, shape, 0, 256, jnp.int32).astype(jnp.uint8)  # noqa: E731
    else:
        obs = lambda k: jax.random.uniform(k, (batch, cfg["obs_dim"]), jnp.float32, -10.0, 10.0)  # noqa: E731
    return {
        "obs": obs(keys[0]),
        "waypoints": obs(keys[1]),
        "value_goals": obs(keys[2]),
        "actor_goals": obs(keys[3]),
        "actions": jax.random.uniform(keys[4], (batch, cfg["action_dim"]), jnp.float32, -1.0, 1.0),
        "waypoint_steps": jax.random.randint(keys[5], (batch,), 1, 40, jnp.int32),
    }


# ---------------------------------------------------------------------------------------------
# Losses (docs/mqe.md sections 4 and 5)
# ---------------------------------------------------------------------------------------------
def encode(params, name, x, pixel):
    return impala(params["enc"][name], x) if pixel else x


def critic_loss(params, batch, gamma, pixel):
    n = batch["obs"].shape[0]
    s_feat_phi = encode(params, "phi", batch["obs"], pixel)
    phi = ensemble_mlp(params["phi"], jnp.concatenate([s_feat_phi, batch["actions"]], axis=-1))  # [E,B,L]
    # One psi pass over s, w, g (the encoder and MLP are shared by all three).
    psi_in = jnp.concatenate([batch["obs"], batch["waypoints"], batch["value_goals"]], axis=0)
    psi_all = ensemble_mlp(params["psi"], encode(params, "psi", psi_in, pixel))  # [E,3B,L]
    psi_s, psi_w, psi_g = psi_all[:, :n], psi_all[:, n:2 * n], psi_all[:, 2 * n:]

    dist = mrn(phi[:, :, None, :], psi_g[:, None, :, :])  # [E,B,B]
    dist_w = sg(mrn(psi_w[:, :, None, :], psi_g[:, None, :, :]))
    delta = dist - dist_w
    discount = jnp.power(gamma, batch["waypoint_steps"].astype(jnp.float32))[None, :, None]
    linex = discount * jnp.exp(jnp.minimum(delta, EDGE_EXP_CLIP)) - dist
    pair_loss = jnp.where(delta > EDGE_EXP_CLIP, delta, linex)
    diag = jnp.diagonal(pair_loss, axis1=1, axis2=2)  # [E,B]
    loss_backup = jnp.mean(0.5 * pair_loss + 0.5 * diag[:, :, None])

    inv_dist = mrn(psi_s, phi)  # d(psi(s), phi(s,a)), [E,B]
    loss_inv = jnp.mean(jnp.square(jnp.exp(-inv_dist) - 1.0))

    diag_dist = jnp.diagonal(dist, axis1=1, axis2=2)
    pair_acc = jnp.mean(jnp.argmin(dist, axis=2) == jnp.arange(n)[None, :])
    metrics = {"loss_backup": loss_backup, "loss_inv": loss_inv, "dist_match_mean": jnp.mean(diag_dist),
               "pair_accuracy": pair_acc}
    return loss_backup + loss_inv, metrics, s_feat_phi


def actor_mean(actor_params, enc_pi, obs, goals, pixel):
    if pixel:
        x = impala(enc_pi, jnp.concatenate([obs, goals], axis=-1))
    else:
        x = jnp.concatenate([obs, goals], axis=-1)
    return actor_mlp(actor_params, x)


def actor_loss(params, batch, s_feat_phi, pixel, recompute_encoders):
    mu = actor_mean(params["actor"], params["enc"].get("pi"), batch["obs"], batch["actor_goals"], pixel)
    a_q = jnp.clip(mu, -1.0, 1.0)
    frozen = sg({k: params[k] for k in ("enc", "phi", "psi")})  # critic frozen: gradient only into the actor
    if recompute_encoders or not pixel:
        s_feat = encode(frozen, "phi", batch["obs"], pixel)
    else:
        s_feat = sg(s_feat_phi)  # identical value to recomputing with frozen weights
    phi_q = ensemble_mlp(frozen["phi"], jnp.concatenate([s_feat, a_q], axis=-1))
    psi_g = ensemble_mlp(frozen["psi"], encode(frozen, "psi", batch["actor_goals"], pixel))
    q = jnp.min(-mrn(phi_q, psi_g), axis=0)  # [B]
    q_loss = -jnp.mean(q) / sg(jnp.mean(jnp.abs(q)) + 1e-6)
    bc_mse = jnp.mean(0.5 * jnp.sum(jnp.square(batch["actions"] - mu), axis=-1))
    metrics = {"q_loss": q_loss, "q_abs_mean": jnp.mean(jnp.abs(q)), "actor_mse": bc_mse}
    return q_loss + ALPHA * bc_mse, metrics


def total_loss(params, batch, gamma, pixel, recompute_encoders):
    c_loss, c_metrics, s_feat_phi = critic_loss(params, batch, gamma, pixel)
    a_loss, a_metrics = actor_loss(params, batch, s_feat_phi, pixel, recompute_encoders)
    metrics = {**c_metrics, **a_metrics, "critic_loss": c_loss, "actor_loss": a_loss, "total_loss": c_loss + a_loss}
    return c_loss + a_loss, metrics


def make_step(optimizer, gamma, pixel, recompute_encoders):
    def step(params, opt_state, batch):
        grads, metrics = jax.grad(total_loss, has_aux=True)(params, batch, gamma, pixel, recompute_encoders)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics, grads

    return step


# ---------------------------------------------------------------------------------------------
# Timing and reporting
# ---------------------------------------------------------------------------------------------
def summarise(times_s, cpu_times_s):
    t = np.asarray(times_s)
    return {"median_s": float(np.median(t)), "p10_s": float(np.percentile(t, 10)),
            "p90_s": float(np.percentile(t, 90)), "n": int(t.size), "cpu_median_s": float(np.median(cpu_times_s))}


def print_environment():
    cpus = len(os.sched_getaffinity(0))
    print(f"jax {jax.__version__}  jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}  "
          f"optax {optax.__version__}  numpy {np.__version__}")
    print(f"device {jax.devices()[0]} ({jax.devices()[0].device_kind}); backend {jax.default_backend()}")
    print(f"threads: XLA CPU sizes its pools from the affinity mask: {cpus} of {os.cpu_count()} CPUs usable; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def flat_named(tree, prefix):
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        out[f"{prefix}/{name}"] = np.asarray(leaf)
    return out


def run_train_step(cfg, args):
    batch_size = args.batch or cfg["batch"]
    key = jax.random.PRNGKey(args.seed)
    k_params, k_batch = jax.random.split(key)
    params = init_params(k_params, cfg)
    batch = random_batch(k_batch, cfg, batch_size)
    optimizer = optax.adam(LR, b1=0.9, b2=0.999, eps=1e-8)
    opt_state = optimizer.init(params)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    print(f"config {args.config}: batch {batch_size}, params {n_params:,}, "
          f"recompute_actor_encoders {args.recompute_actor_encoders}")

    step = make_step(optimizer, cfg["gamma"], cfg["pixel"], args.recompute_actor_encoders)
    if args.dump:
        params0 = params
        new_params, _, metrics, grads = jax.jit(step)(params, opt_state, batch)
        dump = {**flat_named(params0, "param"), **flat_named(batch, "batch"), **flat_named(grads, "grad"),
                **flat_named(metrics, "metric")}
        if not args.fixture:
            dump.update(flat_named(new_params, "updated"))
        dump["config/gamma"] = np.float32(cfg["gamma"])
        dump["config/alpha"] = np.float32(ALPHA)
        dump["config/latent"] = np.int32(LATENT)
        dump["config/hidden"] = np.asarray(HIDDEN, np.int32)
        dump["config/mrn_components"] = np.int32(MRN_COMPONENTS)
        dump["config/impala_blocks"] = np.int32(IMPALA_BLOCKS)
        np.savez(args.dump, **dump)
        print(f"dumped {len(dump)} arrays to {args.dump}")
        print_metrics(metrics)
        return

    # The gradients are an output only for the dump; drop them here so XLA need not keep them.
    step_fn = jax.jit(lambda p, o, b: step(p, o, b)[:3], donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = step_fn.lower(params, opt_state, batch).compile()
    print(f"compile {time.perf_counter() - t0:.1f} s")
    metrics = None
    for _ in range(args.warmup):
        params, opt_state, metrics = compiled(params, opt_state, batch)
        jax.block_until_ready(params)
    times, cpu_times = [], []
    for _ in range(args.steps or (20 if args.config == "state" else 10)):
        t, c = time.perf_counter(), time.process_time()
        params, opt_state, metrics = compiled(params, opt_state, batch)
        jax.block_until_ready((params, opt_state, metrics))
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    print_metrics(metrics)
    report(args.config, batch_size, summarise(times, cpu_times), "s/step")


def run_actor_inference(cfg, args):
    batch_size = args.batch or cfg["batch"]
    params = init_params(jax.random.PRNGKey(args.seed), cfg)
    batch = random_batch(jax.random.PRNGKey(args.seed + 1), cfg, batch_size)
    obs, goals = np.asarray(batch["obs"]), np.asarray(batch["actor_goals"])

    @jax.jit
    def act(actor_params, enc_pi, o, g):
        return jnp.clip(actor_mean(actor_params, enc_pi, o, g, True), -1.0, 1.0)

    actor_params, enc_pi = params["actor"], params["enc"]["pi"]
    t0 = time.perf_counter()
    act(actor_params, enc_pi, obs, goals).block_until_ready()
    print(f"config {args.config}: batch {batch_size}; compile+first call {time.perf_counter() - t0:.1f} s")
    for _ in range(max(args.warmup, 10)):
        act(actor_params, enc_pi, obs, goals).block_until_ready()
    times, cpu_times = [], []
    for _ in range(args.steps or 200):
        t, c = time.perf_counter(), time.process_time()
        # Host numpy images in, as a control loop would pass them (includes the host->device copy).
        np.asarray(act(actor_params, enc_pi, obs, goals))
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    report(args.config, batch_size, summarise(times, cpu_times), "s/call")


def print_metrics(metrics):
    print("metrics (last step): " + ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(metrics.items())))


def report(config, batch, stats, unit):
    print(f"RESULT config={config} batch={batch} median={stats['median_s']:.4f} {unit} "
          f"p10={stats['p10_s']:.4f} p90={stats['p90_s']:.4f} n={stats['n']} "
          f"(process CPU time median {stats['cpu_median_s']:.4f} s; load avg {os.getloadavg()[0]:.2f})")


def main():
    print_environment()
    cfg = config_values(ARGS.config)
    if ARGS.config == "pixel-act":
        run_actor_inference(cfg, ARGS)
    else:
        run_train_step(cfg, ARGS)


if __name__ == "__main__":
    main()
