#!/usr/bin/env python3
"""Recompute the MQE losses of an mqe_step.py --dump file in plain numpy (float64) and compare.

What it is for: a second, independent reading of docs/mqe.md sections 3-5 (no JAX involved) that checks
the JAX reference's loss values, and shows how to read the dump's key layout (the same layout the
Rust cross-check reads). It checks forward values only; gradients are JAX's.

Example:
    python mqe_step.py --config state --batch 8 --dump /tmp/mqe_state_b8.npz
    python check_dump.py /tmp/mqe_state_b8.npz
"""

import sys

import numpy as np

COMPONENTS = 8


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def mlp_member(d, prefix, e, x):
    """Member e of an ensemble MLP stored as param/<prefix>/hidden/<i>/{dense,norm}/..., stacked on axis 0."""
    i = 0
    while f"param/{prefix}/hidden/{i}/dense/kernel" in d:
        h = f"param/{prefix}/hidden/{i}"
        x = gelu(x @ d[f"{h}/dense/kernel"][e] + d[f"{h}/dense/bias"][e])
        x = layer_norm(x, d[f"{h}/norm/scale"][e], d[f"{h}/norm/bias"][e])
        i += 1
    return x @ d[f"param/{prefix}/out/kernel"][e] + d[f"param/{prefix}/out/bias"][e]


def actor(d, x):
    i = 0
    while f"param/actor/hidden/{i}/kernel" in d:
        x = gelu(x @ d[f"param/actor/hidden/{i}/kernel"] + d[f"param/actor/hidden/{i}/bias"])
        i += 1
    return x @ d["param/actor/mean/kernel"] + d["param/actor/mean/bias"]


def mrn(x, y):
    latent = x.shape[-1]  # 512 by default; dumps made with --fixture or --latent are smaller
    diff = (x - y).reshape((x - y).shape[:-1] + (COMPONENTS, latent // COMPONENTS))
    half = diff.shape[-1] // 2
    asym = np.maximum(diff[..., :half].max(-1), 0.0)
    sym = np.sqrt((diff[..., half:] ** 2).sum(-1) + 1e-12)
    return (asym + sym).mean(-1) / np.sqrt(latent)


def losses(d):
    if "param/enc/phi/out/kernel" in d:
        sys.exit("pixel dumps: the numpy check covers state dumps only (encoders are not reimplemented here)")
    gamma, alpha = float(d["config/gamma"]), float(d["config/alpha"])
    s, a, w, g = d["batch/obs"], d["batch/actions"], d["batch/waypoints"], d["batch/value_goals"]
    g_pi, k = d["batch/actor_goals"], d["batch/waypoint_steps"]
    ens = d["param/phi/out/kernel"].shape[0]
    backup, inv, q_members = [], [], []
    mu = actor(d, np.concatenate([s, g_pi], -1))
    a_q = np.clip(mu, -1, 1)
    for e in range(ens):
        phi = mlp_member(d, "phi", e, np.concatenate([s, a], -1))
        psi_s, psi_w, psi_g = (mlp_member(d, "psi", e, x) for x in (s, w, g))
        dist = mrn(phi[:, None], psi_g[None, :])
        delta = dist - mrn(psi_w[:, None], psi_g[None, :])
        pair = np.where(delta > 5, delta, gamma ** k[:, None] * np.exp(np.minimum(delta, 5)) - dist)
        backup.append(0.5 * pair + 0.5 * np.diag(pair)[:, None])
        inv.append((np.exp(-mrn(psi_s, phi)) - 1.0) ** 2)
        phi_q = mlp_member(d, "phi", e, np.concatenate([s, a_q], -1))
        q_members.append(-mrn(phi_q, mlp_member(d, "psi", e, g_pi)))
    q = np.min(q_members, axis=0)
    bc = np.mean(0.5 * ((a - mu) ** 2).sum(-1))
    return {
        "loss_backup": np.mean(backup),
        "loss_inv": np.mean(inv),
        "q_loss": -q.mean() / (np.abs(q).mean() + 1e-6),
        "actor_mse": bc,
        "total_loss": np.mean(backup) + np.mean(inv) - q.mean() / (np.abs(q).mean() + 1e-6) + alpha * bc,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DUMP.npz")
    with np.load(sys.argv[1]) as f:
        d = {k: f[k].astype(np.float64) if f[k].dtype.kind == "f" else f[k] for k in f.files}
    worst = 0.0
    for name, value in losses(d).items():
        jax_value = float(d[f"metric/{name}"])
        rel = abs(value - jax_value) / max(abs(value), 1e-12)
        worst = max(worst, rel)
        print(f"{name:12s} numpy {value:.9g}  jax {jax_value:.9g}  rel.err {rel:.2e}")
    print("OK" if worst < 1e-4 else "MISMATCH")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
