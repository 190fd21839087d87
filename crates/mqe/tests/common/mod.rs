//! Shared helpers: small models, seeded batches, and a plain-loop MRN reference.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, backprop::GradStore};
use mqe::{Agent, Batch, ModelConfig, TrainConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub const OBS_DIM: usize = 3;
pub const ACTION_DIM: usize = 2;

/// A small state model: latent 8 in 2 MRN components, one hidden layer of 8.
pub fn small_model() -> ModelConfig {
    let mut m = ModelConfig::state(OBS_DIM, ACTION_DIM);
    m.latent_dim = 8;
    m.mrn_components = 2;
    m.mlp_hidden = vec![8, 8];
    m.actor_hidden = vec![8];
    m
}

pub fn small_train(batch: usize) -> TrainConfig {
    TrainConfig {
        batch_size: batch,
        gamma: 0.9,
        ..TrainConfig::default()
    }
}

pub fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

pub fn state_batch(b: usize, seed: u64, dev: &Device) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obs =
        || Tensor::from_vec(rand_vec(&mut rng, b * OBS_DIM, 2.0), (b, OBS_DIM), dev).unwrap();
    let (o, n, g, w, ag) = (obs(), obs(), obs(), obs(), obs());
    let ks: Vec<f32> = (0..b).map(|i| (1 + i % 4) as f32).collect();
    let mut rng = StdRng::seed_from_u64(seed + 1);
    Batch {
        obs: o,
        next_obs: n,
        goal: g,
        waypoint: w,
        waypoint_offset: Tensor::from_vec(ks, b, dev).unwrap(),
        actor_goal: ag,
        action: Tensor::from_vec(
            rand_vec(&mut rng, b * ACTION_DIM, 1.0),
            (b, ACTION_DIM),
            dev,
        )
        .unwrap(),
    }
}

pub fn small_agent(seed: u64) -> Agent {
    let mut train = small_train(6);
    train.seed = seed;
    Agent::new(small_model(), train, &Device::Cpu).unwrap()
}

/// MRN distance by the definition (docs/mqe.md section 3), in f64.
pub fn mrn_ref(x: &[f64], y: &[f64], components: usize) -> f64 {
    let d = x.len();
    let chunk = d / components;
    let half = chunk / 2;
    let mut total = 0.0;
    for c in 0..components {
        let diff: Vec<f64> = (0..chunk)
            .map(|k| x[c * chunk + k] - y[c * chunk + k])
            .collect();
        let asym = diff[..half]
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
            .max(0.0);
        let sym = (diff[half..].iter().map(|v| v * v).sum::<f64>() + 1e-12).sqrt();
        total += asym + sym;
    }
    total / components as f64 / (d as f64).sqrt()
}

pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// The largest |a - b| over all elements, both sides taken to f64 first.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// sum(y * r), the scalar that weights every element of `y` by the matching one of `r`.
pub fn weighted_sum(y: &Tensor, r: &Tensor) -> Tensor {
    (y * r).unwrap().sum_all().unwrap()
}

/// [`weighted_sum`] of f32 tensors, read out as f64.
pub fn weighted_sum_f64(y: &Tensor, r: &Tensor) -> f64 {
    f64::from(weighted_sum(y, r).to_scalar::<f32>().unwrap())
}

/// The gradient of `x` held in `grads`, flattened to f32 values.
pub fn grad_vec(grads: &GradStore, x: &Tensor) -> Vec<f32> {
    grads
        .get(x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// d loss / d x, flattened to f32 values.
pub fn grad_of(loss: &Tensor, x: &Tensor) -> Vec<f32> {
    grad_vec(&loss.backward().unwrap(), x)
}

/// Checks coordinates `0..n` of the analytic gradient `analytic` (called `name`) against central
/// differences: `(shifted(k, eps) - shifted(k, -eps)) / (2 eps)`, where `shifted(k, delta)` is the
/// loss with coordinate `k` moved by `delta`, must be within `tol` of `analytic[k]`.
pub fn assert_central_differences(
    name: &str,
    analytic: &[f32],
    n: usize,
    (eps, tol): (f64, f64),
    shifted: impl Fn(usize, f64) -> f64,
) {
    for (k, &got) in analytic[..n].iter().enumerate() {
        let numeric = (shifted(k, eps) - shifted(k, -eps)) / (2.0 * eps);
        assert!(
            (numeric - f64::from(got)).abs() < tol,
            "{name}[{k}]: {numeric} vs {got}"
        );
    }
}
