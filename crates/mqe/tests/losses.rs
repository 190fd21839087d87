//! The losses against plain loops, their gradients against finite differences, and the
//! stop-gradient / frozen-critic semantics of docs/mqe.md sections 4, 5 and 7.

mod common;

use candle_core::{D, DType, Device, Tensor, Var};
use common::*;
use mqe::losses::{actor_loss, clip_action, critic_loss, gcbc_loss, pair_accuracy};
use rand::{SeedableRng, rngs::StdRng};

const E: usize = 2;
const B: usize = 5;
const DIM: usize = 16;
const COMPS: usize = 2;
const GAMMA: f64 = 0.9;

struct Latents {
    phi_sa: Vec<f64>,
    psi_s: Vec<f64>,
    psi_w: Vec<f64>,
    psi_g: Vec<f64>,
    k: Vec<f64>,
}

fn row(v: &[f64], e: usize, i: usize) -> &[f64] {
    &v[(e * B + i) * DIM..(e * B + i + 1) * DIM]
}

/// Section 4 by the letter. `psi_g_w` is the psi(g) inside distW (held fixed by stop-gradient).
fn critic_ref(l: &Latents, psi_g_w: &[f64]) -> (f64, f64) {
    let mut all = 0.0;
    for e in 0..E {
        let pair = |i: usize, j: usize| {
            let dist = mrn_ref(row(&l.phi_sa, e, i), row(&l.psi_g, e, j), COMPS);
            let dist_w = mrn_ref(row(&l.psi_w, e, i), row(psi_g_w, e, j), COMPS);
            let delta = dist - dist_w;
            if delta > 5.0 {
                delta
            } else {
                GAMMA.powf(l.k[i]) * delta.min(5.0).exp() - dist
            }
        };
        for i in 0..B {
            for j in 0..B {
                all += 0.5 * pair(i, j) + 0.5 * pair(i, i);
            }
        }
    }
    let backup = all / (E * B * B) as f64;
    let mut inv = 0.0;
    for e in 0..E {
        for i in 0..B {
            let d = mrn_ref(row(&l.psi_s, e, i), row(&l.phi_sa, e, i), COMPS);
            inv += ((-d).exp() - 1.0).powi(2);
        }
    }
    (backup, inv / (E * B) as f64)
}

fn latents(seed: u64, phi_scale: f32) -> Latents {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = E * B * DIM;
    let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    Latents {
        phi_sa: f(rand_vec(&mut rng, n, phi_scale)),
        psi_s: f(rand_vec(&mut rng, n, 1.0)),
        psi_w: f(rand_vec(&mut rng, n, 1.0)),
        psi_g: f(rand_vec(&mut rng, n, 1.0)),
        k: (0..B).map(|i| (1 + (i * 7) % 5) as f64).collect(),
    }
}

fn var(v: &[f64], shape: &[usize]) -> Var {
    let data: Vec<f32> = v.iter().map(|x| *x as f32).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
}

fn candle_critic(l: &Latents) -> (Var, Var, Var, Var, mqe::losses::CriticLoss) {
    let shape = [E, B, DIM];
    let (p, s, w, g) = (
        var(&l.phi_sa, &shape),
        var(&l.psi_s, &shape),
        var(&l.psi_w, &shape),
        var(&l.psi_g, &shape),
    );
    let k: Vec<f32> = l.k.iter().map(|v| *v as f32).collect();
    let k = Tensor::from_vec(k, B, &Device::Cpu).unwrap();
    let loss = critic_loss(&p, &s, &w, &g, &k, GAMMA, COMPS).unwrap();
    (p, s, w, g, loss)
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn critic_loss_matches_plain_loops_in_both_branches() {
    // phi scale 1: every pair on the exp branch; scale 300: some pairs past the 5.0 guard.
    for (seed, phi_scale) in [(1, 1.0), (2, 300.0)] {
        let l = latents(seed, phi_scale);
        let (backup_ref, inv_ref) = critic_ref(&l, &l.psi_g);
        let (.., loss) = candle_critic(&l);
        let (backup, inv) = (scalar(&loss.loss_backup), scalar(&loss.loss_inv));
        assert!(
            close(backup, backup_ref, 1e-5),
            "backup {backup} vs {backup_ref}"
        );
        assert!(close(inv, inv_ref, 1e-5), "inv {inv} vs {inv_ref}");
        assert!(close(scalar(&loss.loss), backup_ref + inv_ref, 1e-5));
        // The dist tensor is the all-pairs MRN matrix.
        let dist = to_f64(&loss.dist);
        for e in 0..E {
            for i in 0..B {
                for j in 0..B {
                    let r = mrn_ref(row(&l.phi_sa, e, i), row(&l.psi_g, e, j), COMPS);
                    assert!(close(dist[(e * B + i) * B + j], r, 1e-5));
                }
            }
        }
    }
    // The guarded case really exercises the linear branch.
    let l = latents(2, 300.0);
    let past_guard = (0..B).any(|i| {
        (0..B).any(|j| {
            mrn_ref(row(&l.phi_sa, 0, i), row(&l.psi_g, 0, j), COMPS)
                - mrn_ref(row(&l.psi_w, 0, i), row(&l.psi_g, 0, j), COMPS)
                > 5.0
        })
    });
    assert!(past_guard);
}

type LossOf<'a> = &'a dyn Fn(&[f64]) -> f64;

/// Central difference of `f` with respect to entry `idx` of `v`.
fn fd(v: &[f64], idx: usize, f: impl Fn(&[f64]) -> f64) -> f64 {
    let h = 1e-6;
    let mut plus = v.to_vec();
    plus[idx] += h;
    let mut minus = v.to_vec();
    minus[idx] -= h;
    (f(&plus) - f(&minus)) / (2.0 * h)
}

#[test]
fn critic_gradients_match_finite_differences_with_stop_gradient_on_dist_w() {
    let l = latents(3, 1.0);
    let (p, s, w, g, loss) = candle_critic(&l);
    let grads = loss.loss.backward().unwrap();
    let total = |l: &Latents, g_w: &[f64]| {
        let (b, i) = critic_ref(l, g_w);
        b + i
    };
    let with_phi = |v: &[f64]| {
        total(
            &Latents {
                phi_sa: v.to_vec(),
                ..clone(&l)
            },
            &l.psi_g,
        )
    };
    let with_psi_s = |v: &[f64]| {
        total(
            &Latents {
                psi_s: v.to_vec(),
                ..clone(&l)
            },
            &l.psi_g,
        )
    };
    // psi(g) moves dist only: the distW copy stays at the original values.
    let with_psi_g = |v: &[f64]| {
        total(
            &Latents {
                psi_g: v.to_vec(),
                ..clone(&l)
            },
            &l.psi_g,
        )
    };
    let checks: [(&str, &Var, &[f64], LossOf); 3] = [
        ("phi_sa", &p, &l.phi_sa, &with_phi),
        ("psi_s", &s, &l.psi_s, &with_psi_s),
        ("psi_g", &g, &l.psi_g, &with_psi_g),
    ];
    for (name, v, base, f) in checks {
        let analytic = to_f64(grads.get(v).unwrap());
        for idx in [0, 5, 17, 40, 77, 120, 159] {
            let numeric = fd(base, idx, f);
            assert!(
                (analytic[idx] - numeric).abs() <= 1e-4 + 1e-3 * numeric.abs(),
                "{name}[{idx}]: analytic {} vs numeric {numeric}",
                analytic[idx]
            );
        }
    }
    // distW carries no gradient, so psi(w) gets none at all.
    assert!(
        grads
            .get(&w)
            .is_none_or(|t| to_f64(t).iter().all(|x| *x == 0.0))
    );
}

fn clone(l: &Latents) -> Latents {
    Latents {
        phi_sa: l.phi_sa.clone(),
        psi_s: l.psi_s.clone(),
        psi_w: l.psi_w.clone(),
        psi_g: l.psi_g.clone(),
        k: l.k.clone(),
    }
}

#[test]
fn actor_loss_matches_plain_loops() {
    let mut rng = StdRng::seed_from_u64(4);
    let (b, a) = (7, 3);
    let q: Vec<f32> = rand_vec(&mut rng, E * b, 1.0)
        .iter()
        .map(|v| -v.abs() * 3.0)
        .collect();
    let mu = rand_vec(&mut rng, b * a, 1.5);
    let act = rand_vec(&mut rng, b * a, 1.0);
    let alpha = 0.3;
    let dev = Device::Cpu;
    let t = |v: &[f32], s: &[usize]| Tensor::from_vec(v.to_vec(), s, &dev).unwrap();
    let out = actor_loss(&t(&q, &[E, b]), &t(&mu, &[b, a]), &t(&act, &[b, a]), alpha).unwrap();
    let qmin: Vec<f64> = (0..b).map(|i| q[i].min(q[b + i]) as f64).collect();
    let mean_q = qmin.iter().sum::<f64>() / b as f64;
    let mean_abs = qmin.iter().map(|v| v.abs()).sum::<f64>() / b as f64;
    let q_ref = -mean_q / (mean_abs + 1e-6);
    let bc_ref = alpha
        * (0..b)
            .map(|i| {
                0.5 * (0..a)
                    .map(|j| ((act[i * a + j] - mu[i * a + j]) as f64).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
        / b as f64;
    assert!(close(scalar(&out.q_loss), q_ref, 1e-5));
    assert!(close(scalar(&out.bc_loss), bc_ref, 1e-5));
    assert!(close(scalar(&out.loss), q_ref + bc_ref, 1e-5));
    assert!(close(scalar(&out.q_abs_mean), mean_abs, 1e-5));
    // GCBC is the alpha-free BC term.
    let gcbc = gcbc_loss(&t(&mu, &[b, a]), &t(&act, &[b, a])).unwrap();
    assert!(close(scalar(&gcbc), bc_ref / alpha, 1e-5));
}

#[test]
fn q_loss_denominator_is_a_constant() {
    // With all q < 0, -mean(q) / mean|q| is identically 1; only a constant denominator leaves
    // the gradient -1 / (B * mean|q|) per element of q.
    let q = Var::from_tensor(&Tensor::new(&[[-1f32, -2.0], [-3.0, -0.5]], &Device::Cpu).unwrap())
        .unwrap();
    let mu = Tensor::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
    let out = actor_loss(&q, &mu, &mu, 0.0).unwrap();
    let g = to_f64(out.loss.backward().unwrap().get(&q).unwrap());
    // min over e: column 0 -> -3 (row 1), column 1 -> -2 (row 0); mean|q| = 2.5.
    let expected = [0.0, -1.0 / (2.0 * 2.5), -1.0 / (2.0 * 2.5), 0.0];
    for (a, b) in g.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{g:?}");
    }
}

#[test]
fn clip_has_zero_gradient_outside_the_box() {
    let mu =
        Var::from_tensor(&Tensor::new(&[-1.5f32, -0.3, 0.9, 2.0], &Device::Cpu).unwrap()).unwrap();
    let clipped = clip_action(&mu).unwrap();
    assert_eq!(
        clipped.to_vec1::<f32>().unwrap(),
        vec![-1.0, -0.3, 0.9, 1.0]
    );
    let w = Tensor::new(&[1f32, 2.0, 3.0, 4.0], &Device::Cpu).unwrap();
    let g = clipped
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        g.get(&mu).unwrap().to_vec1::<f32>().unwrap(),
        vec![0.0, 2.0, 3.0, 0.0]
    );
}

#[test]
fn pair_accuracy_counts_row_argmins_on_the_diagonal() {
    let dist = Tensor::new(
        &[[[0.1f32, 0.5], [0.2, 0.3]], [[0.9, 0.5], [0.7, 0.1]]],
        &Device::Cpu,
    )
    .unwrap();
    // member 0: row 0 -> 0 (hit), row 1 -> 0 (miss); member 1: row 0 -> 1 (miss), row 1 -> 1 (hit).
    assert_eq!(pair_accuracy(&dist).unwrap(), 0.5);
}

fn param(agent: &mqe::Agent, name: &str) -> Var {
    agent
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .1
}

/// Central difference of `f(agent)` in one parameter entry, in f32 with a step of 1e-2.
fn fd_param(agent: &mqe::Agent, name: &str, idx: usize, f: &dyn Fn(&mqe::Agent) -> f64) -> f64 {
    let v = param(agent, name);
    let orig = v
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let h = 1e-2f32;
    let at = |delta: f32| {
        let mut vals = orig.clone();
        vals[idx] += delta;
        v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap())
            .unwrap();
        f(agent)
    };
    let (plus, minus) = (at(h), at(-h));
    at(0.0);
    (plus - minus) / (2.0 * h as f64)
}

#[test]
fn network_gradients_match_finite_differences() {
    let agent = small_agent(5);
    let batch = state_batch(6, 11, &Device::Cpu);
    let (critic, actor) = agent.loss_tensors(&batch).unwrap();
    let critic_grads = critic.unwrap().backward().unwrap();
    let actor_grads = actor.backward().unwrap();
    let critic_value = |a: &mqe::Agent| scalar(&a.loss_tensors(&batch).unwrap().0.unwrap());
    // phi's parameters do not reach distW, so the plain loss is the one differentiated.
    for (name, idx) in [
        ("phi.mlp.hidden0.weight", 3),
        ("phi.mlp.hidden1.bias", 1),
        ("phi.mlp.norm0.scale", 2),
        ("phi.mlp.output.weight", 9),
    ] {
        let analytic = to_f64(critic_grads.get(param(&agent, name).as_tensor()).unwrap())[idx];
        let numeric = fd_param(&agent, name, idx, &critic_value);
        assert!(
            (analytic - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs(),
            "critic d/d {name}[{idx}]: analytic {analytic} vs numeric {numeric}"
        );
    }
    // Actor: the q term's denominator is a constant, so differentiate q_loss * (mean|q|) / c0.
    let m0 = agent.evaluate(&batch).unwrap();
    let c0 = m0.q_abs_mean as f64 + 1e-6;
    let actor_value = |a: &mqe::Agent| {
        let m = a.evaluate(&batch).unwrap();
        m.q_loss as f64 * (m.q_abs_mean as f64 + 1e-6) / c0 + m.bc_loss as f64
    };
    let mut any_nonzero = false;
    for (name, idx) in [
        ("actor.hidden0.weight", 4),
        ("actor.mean.weight", 3),
        ("actor.mean.bias", 1),
    ] {
        let analytic = to_f64(actor_grads.get(param(&agent, name).as_tensor()).unwrap())[idx];
        let numeric = fd_param(&agent, name, idx, &actor_value);
        any_nonzero |= analytic.abs() > 1e-4;
        assert!(
            (analytic - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs(),
            "actor d/d {name}[{idx}]: analytic {analytic} vs numeric {numeric}"
        );
    }
    assert!(any_nonzero);
}

#[test]
fn actor_loss_leaves_every_critic_gradient_at_zero() {
    let agent = small_agent(6);
    let batch = state_batch(6, 12, &Device::Cpu);
    let (_, actor) = agent.loss_tensors(&batch).unwrap();
    let grads = actor.backward().unwrap();
    let mut actor_params_with_grad = 0;
    for (name, v) in agent.parameters() {
        let g = grads.get(v.as_tensor());
        if name.starts_with("actor.") {
            actor_params_with_grad +=
                usize::from(g.is_some_and(|t| to_f64(t).iter().any(|x| *x != 0.0)));
        } else {
            assert!(
                g.is_none_or(|t| to_f64(t).iter().all(|x| *x == 0.0)),
                "critic parameter {name} got a gradient from the actor loss"
            );
        }
    }
    assert!(
        actor_params_with_grad >= 4,
        "actor got gradients in {actor_params_with_grad} tensors"
    );
}

#[test]
fn gcbc_agent_trains_only_an_actor_on_bc() {
    let mut model = small_model();
    model.algo = mqe::Algo::Gcbc;
    let train = mqe::TrainConfig {
        lr: 1e-2,
        ..small_train(6)
    };
    let mut agent = mqe::Agent::new(model, train, &Device::Cpu).unwrap();
    assert!(
        agent
            .parameters()
            .iter()
            .all(|(n, _)| n.starts_with("actor."))
    );
    let batch = state_batch(6, 13, &Device::Cpu);
    let (critic, loss) = agent.loss_tensors(&batch).unwrap();
    assert!(critic.is_none());
    // The loss is mean 0.5 ||a - mu||^2 of the unclipped mean action.
    let mu = {
        let h = Tensor::cat(&[&batch.obs, &batch.actor_goal], D::Minus1).unwrap();
        let get = |n: &str| param(&agent, n).as_tensor().clone();
        let h = h
            .matmul(&get("actor.hidden0.weight"))
            .unwrap()
            .broadcast_add(&get("actor.hidden0.bias"))
            .unwrap()
            .gelu()
            .unwrap();
        h.matmul(&get("actor.mean.weight"))
            .unwrap()
            .broadcast_add(&get("actor.mean.bias"))
            .unwrap()
    };
    let expected = ((&batch.action - &mu)
        .unwrap()
        .sqr()
        .unwrap()
        .sum(1)
        .unwrap()
        .mean_all()
        .unwrap()
        * 0.5)
        .unwrap();
    assert!(close(scalar(&loss), scalar(&expected), 1e-5));
    let before = agent.evaluate(&batch).unwrap().bc_loss;
    for _ in 0..50 {
        agent.train_step(&batch).unwrap();
    }
    let after = agent.evaluate(&batch).unwrap();
    assert!(
        after.bc_loss < 0.5 * before,
        "bc {before} -> {}",
        after.bc_loss
    );
    assert_eq!(after.loss_backup, 0.0);
    assert!(agent.distance(&batch.obs, &batch.goal).is_err());
}

#[test]
fn mqe_training_reduces_the_critic_loss_on_a_fixed_batch() {
    let mut agent = small_agent(7);
    let batch = state_batch(6, 14, &Device::Cpu);
    let first = agent.train_step(&batch).unwrap();
    let mut last = first;
    for _ in 0..60 {
        last = agent.train_step(&batch).unwrap();
    }
    assert!(
        last.loss_backup < first.loss_backup,
        "{first:?} -> {last:?}"
    );
    assert!(last.total_loss.is_finite());
    assert_eq!(agent.step(), 61);
    let act = agent
        .act(&batch.obs, &batch.goal)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(act.iter().flatten().all(|v| (-1.0..=1.0).contains(v)));
    let d = agent
        .distance(&batch.obs, &batch.obs)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(d.iter().all(|v| v.abs() < 1e-4), "d(s, s) = {d:?}");
}

#[test]
fn distance_to_a_cached_goal_latent_equals_the_distance() {
    let mut agent = small_agent(3);
    let batch = state_batch(6, 21, &Device::Cpu);
    for _ in 0..5 {
        agent.train_step(&batch).unwrap();
    }
    let direct = to_f64(&agent.distance(&batch.obs, &batch.goal).unwrap());
    let latent = agent.goal_latent(&batch.goal).unwrap();
    let cached = to_f64(&agent.distance_to_latent(&batch.obs, &latent).unwrap());
    assert!(
        direct.iter().any(|d| *d > 1e-4),
        "trained distances {direct:?}"
    );
    for (d, c) in direct.iter().zip(&cached) {
        assert!(close(*d, *c, 1e-6), "{direct:?} vs {cached:?}");
    }

    // One goal for a whole batch of observations (deployment: the goal stays fixed).
    let one_goal = batch.goal.narrow(0, 2, 1).unwrap();
    let broadcast_goal = one_goal.repeat((6, 1)).unwrap();
    let expected = to_f64(&agent.distance(&batch.obs, &broadcast_goal).unwrap());
    let single = agent.goal_latent(&one_goal).unwrap();
    let got = to_f64(&agent.distance_to_latent(&batch.obs, &single).unwrap());
    for (e, g) in expected.iter().zip(&got) {
        assert!(close(*e, *g, 1e-6), "{expected:?} vs {got:?}");
    }

    let wrong = agent
        .goal_latent(&batch.goal.narrow(0, 0, 4).unwrap())
        .unwrap();
    let err = agent.distance_to_latent(&batch.obs, &wrong).unwrap_err();
    assert!(err.to_string().contains("goal_latent"), "{err}");
}

#[test]
fn pixel_agent_runs_a_train_step_and_acts() {
    let dev = Device::Cpu;
    let mut model = mqe::ModelConfig::pixels(16, 3, 4);
    model.latent_dim = 16;
    model.mrn_components = 2;
    model.mlp_hidden = vec![16];
    model.actor_hidden = vec![16];
    model.encoder_dim = 16;
    assert_eq!(model.encoder_out_size_px(), Some(2));
    let mut agent = mqe::Agent::new(model, mqe::TrainConfig::pixels(), &dev).unwrap();
    let img = |seed: f64| {
        (Tensor::arange(0u32, 4 * 16 * 16 * 3, &dev)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            * seed)
            .unwrap()
            .sin()
            .unwrap()
            .affine(120.0, 128.0)
            .unwrap()
            .to_dtype(DType::U8)
            .unwrap()
            .reshape((4, 16, 16, 3))
            .unwrap()
    };
    let batch = mqe::Batch {
        obs: img(0.1),
        next_obs: img(0.2),
        goal: img(0.3),
        waypoint: img(0.2),
        waypoint_offset: Tensor::ones(4, DType::F32, &dev).unwrap(),
        actor_goal: img(0.4),
        action: Tensor::zeros((4, 4), DType::F32, &dev).unwrap(),
    };
    let m = agent.train_step(&batch).unwrap();
    assert!(m.total_loss.is_finite() && m.loss_inv.is_finite());
    assert_eq!(agent.act(&batch.obs, &batch.goal).unwrap().dims(), &[4, 4]);
    // Images of the wrong size are refused with the field named.
    let err = agent
        .act(&img(0.1).narrow(1, 0, 8).unwrap(), &batch.goal)
        .unwrap_err();
    assert!(err.to_string().contains("obs"), "{err}");
}
