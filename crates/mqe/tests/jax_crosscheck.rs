//! One MQE training step against an independent implementation: `tools/jax-reference`.
//!
//! The fixtures in `tests/fixtures/` were written by the JAX reference (plain JAX and optax, no
//! code shared with this crate) with
//!
//! ```sh
//! cd tools/jax-reference
//! python mqe_step.py --config state --fixture --batch 8 --dump ../../crates/mqe/tests/fixtures/jax-step-state.npz
//! python mqe_step.py --config pixel --fixture --batch 6 --dump ../../crates/mqe/tests/fixtures/jax-step-pixel.npz
//! ```
//!
//! Each holds the initial parameters of a small model (latent 32 in 8 MRN components, hidden
//! layers [32, 32]; the pixel one has three impala-small encoders on 16x16 RGB), one batch, and
//! JAX's losses and the gradient of the total loss for every parameter. The test loads the same
//! parameters and batch into an [`Agent`], computes the step's losses and gradients, and
//! requires every one to agree within a relative 1e-4 (largest difference over the largest JAX
//! magnitude of the tensor), on the fast CPU kernels and on the portable path a GPU runs.
//!
//! Tests that compare against plain f64 loops share this crate's reading of docs/mqe.md; this
//! one does not, so it catches a misreading of the method, not only an arithmetic slip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mqe::ops::{max_relative_difference, with_portable_ops};
use mqe::{Agent, Batch, Metrics, ModelConfig, ObsKind, TrainConfig};
use npyz::npz::NpzArchive;

const REL_TOL: f32 = 1e-4;

/// Every array of a JAX dump, as f32 (batch images as u8, waypoint steps as i32 -> f32).
struct Dump {
    f32s: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    images: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_dump(path: &Path) -> Dump {
    let mut archive = NpzArchive::open(path).expect("open the JAX fixture");
    let names: Vec<String> = archive.array_names().map(String::from).collect();
    let mut dump = Dump {
        f32s: BTreeMap::new(),
        images: BTreeMap::new(),
    };
    for name in names {
        let npy = archive.by_name(&name).expect("read").expect("present");
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        match npy.dtype().descr().as_str() {
            "'|u1'" => {
                dump.images
                    .insert(name, (shape, npy.into_vec().expect("u8")));
            }
            "'<i4'" => {
                let v: Vec<i32> = npy.into_vec().expect("i32");
                let v = v.into_iter().map(|x| x as f32).collect();
                dump.f32s.insert(name, (shape, v));
            }
            "'<f4'" => {
                dump.f32s
                    .insert(name, (shape, npy.into_vec().expect("f32")));
            }
            other => panic!("{name}: unexpected dtype {other}"),
        }
    }
    dump
}

impl Dump {
    fn tensor(&self, key: &str) -> Tensor {
        if let Some((shape, v)) = self.images.get(key) {
            return Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap();
        }
        let (shape, v) = self
            .f32s
            .get(key)
            .unwrap_or_else(|| panic!("the fixture has no {key}"));
        Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap()
    }

    fn scalar(&self, key: &str) -> f32 {
        self.f32s[key].1[0]
    }

    fn batch(&self) -> Batch {
        let obs = self.tensor("batch/obs");
        Batch {
            next_obs: obs.clone(),
            obs,
            goal: self.tensor("batch/value_goals"),
            waypoint: self.tensor("batch/waypoints"),
            waypoint_offset: self.tensor("batch/waypoint_steps"),
            actor_goal: self.tensor("batch/actor_goals"),
            action: self.tensor("batch/actions"),
        }
    }
}

/// The JAX name of one of this crate's parameters, and whether it is a conv kernel (JAX stores
/// those HWIO, this crate OIHW).
fn jax_name(rust: &str) -> (String, bool) {
    let parts: Vec<&str> = rust.split('.').collect();
    let kind = |k: &str| if k == "weight" { "kernel" } else { k }.to_string();
    let index = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_string();
    match parts.as_slice() {
        [net, "encoder", rest @ ..] => {
            let net = if *net == "actor" { "pi" } else { net };
            let (path, conv) = match rest {
                [stack, "conv", k] => (
                    format!("stacks/{}/conv/{}", index(stack, "stack"), kind(k)),
                    true,
                ),
                [stack, block, conv, k] => {
                    // conv0 / conv1 here are conv1 / conv2 there.
                    let n: usize = index(conv, "conv").parse().unwrap();
                    let path = format!(
                        "stacks/{}/blocks/{}/conv{}/{}",
                        index(stack, "stack"),
                        index(block, "block"),
                        n + 1,
                        kind(k)
                    );
                    (path, true)
                }
                ["dense", k] => (format!("out/{}", kind(k)), false),
                _ => panic!("unmapped encoder parameter {rust}"),
            };
            (
                format!("enc/{net}/{path}"),
                conv && rest.last() == Some(&"weight"),
            )
        }
        [net, "mlp", layer, k] => {
            let path = if let Some(i) = layer.strip_prefix("hidden") {
                format!("hidden/{i}/dense/{}", kind(k))
            } else if let Some(i) = layer.strip_prefix("norm") {
                format!("hidden/{i}/norm/{}", kind(k))
            } else {
                format!("out/{}", kind(k))
            };
            (format!("{net}/{path}"), false)
        }
        ["actor", "mean", k] => (format!("actor/mean/{}", kind(k)), false),
        ["actor", layer, k] => (
            format!("actor/hidden/{}/{}", index(layer, "hidden"), kind(k)),
            false,
        ),
        _ => panic!("unmapped parameter {rust}"),
    }
}

/// A JAX array in this crate's layout: conv kernels HWIO -> OIHW, and the rows of an encoder's
/// output Dense reordered, because JAX flattens the last feature map as (h, w, c) and this crate
/// as (c, h, w).
fn jax_tensor(dump: &Dump, key: &str, conv: bool) -> Tensor {
    let t = dump.tensor(key);
    if conv {
        return t.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
    }
    let encoder_out = key.contains("enc/") && key.ends_with("/out/kernel");
    if !encoder_out {
        return t;
    }
    let last_channels = *mqe::layers::IMPALA_CHANNELS.last().unwrap();
    let (rows, cols) = t.dims2().unwrap();
    let side = ((rows / last_channels) as f64).sqrt() as usize;
    assert_eq!(side * side * last_channels, rows, "{key}: rows");
    t.reshape((side, side, last_channels, cols))
        .unwrap()
        .permute((2, 0, 1, 3))
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

fn agent_for(dump: &Dump) -> Agent {
    let pixel = dump.images.contains_key("batch/obs");
    let obs = dump.tensor("batch/obs");
    let action_dim = dump.tensor("batch/actions").dim(1).unwrap();
    let mut model = match pixel {
        true => ModelConfig::pixels(obs.dim(1).unwrap(), obs.dim(3).unwrap(), action_dim),
        false => ModelConfig::state(obs.dim(1).unwrap(), action_dim),
    };
    let hidden: Vec<usize> = dump.f32s["config/hidden"]
        .1
        .iter()
        .map(|&h| h as usize)
        .collect();
    model.latent_dim = dump.scalar("config/latent") as usize;
    model.encoder_dim = model.latent_dim;
    model.mrn_components = dump.scalar("config/mrn_components") as usize;
    model.mlp_hidden = hidden.clone();
    model.actor_hidden = hidden;
    assert_eq!(dump.scalar("config/impala_blocks"), 1.0, "impala-small");
    let train = TrainConfig {
        batch_size: obs.dim(0).unwrap(),
        gamma: f64::from(dump.scalar("config/gamma")),
        bc_alpha: f64::from(dump.scalar("config/alpha")),
        ..TrainConfig::default()
    };
    let agent = Agent::new(model, train, &Device::Cpu).unwrap();
    let mut loaded = 0;
    for (name, var) in agent.parameters() {
        let (key, conv) = jax_name(&name);
        let value = jax_tensor(dump, &format!("param/{key}"), conv);
        assert_eq!(value.dims(), var.dims(), "{name} <- param/{key}: shapes");
        var.set(&value).unwrap();
        loaded += 1;
    }
    let jax_params = dump.f32s.keys().filter(|k| k.starts_with("param/")).count();
    assert_eq!(
        loaded, jax_params,
        "every JAX parameter has exactly one counterpart here"
    );
    agent
}

fn assert_loss(what: &str, ours: f32, jax: f32) {
    let rel = (ours - jax).abs() / jax.abs().max(1e-12);
    assert!(
        rel <= REL_TOL,
        "{what}: ours {ours:.9} JAX {jax:.9} (relative {rel:e})"
    );
}

/// Losses and every gradient of one step agree with the dump.
fn check_step(dump: &Dump) {
    let agent = agent_for(dump);
    let batch = dump.batch();
    let m: Metrics = agent.evaluate(&batch).unwrap();
    let metric = |k: &str| dump.scalar(&format!("metric/{k}"));
    let alpha = dump.scalar("config/alpha");
    assert_loss("loss_backup", m.loss_backup, metric("loss_backup"));
    assert_loss("loss_inv", m.loss_inv, metric("loss_inv"));
    assert_loss("q_loss", m.q_loss, metric("q_loss"));
    // JAX's actor_mse is mean over the batch of 0.5 ||a - mu||^2 (before alpha).
    assert_loss("bc_loss / alpha", m.bc_loss / alpha, metric("actor_mse"));
    assert_loss("q_abs_mean", m.q_abs_mean, metric("q_abs_mean"));
    assert_loss("dist_matching", m.dist_matching, metric("dist_match_mean"));
    assert_loss("total_loss", m.total_loss, metric("total_loss"));
    assert_eq!(m.pair_accuracy, metric("pair_accuracy"), "pair accuracy");

    let (_, grads) = agent.loss_and_gradients(&batch).unwrap();
    let ours: BTreeMap<String, Tensor> = grads.into_iter().collect();
    let mut worst = (0f32, String::new());
    for (name, _) in agent.parameters() {
        let (key, conv) = jax_name(&name);
        let want = jax_tensor(dump, &format!("grad/{key}"), conv);
        let got = ours
            .get(&name)
            .cloned()
            .unwrap_or_else(|| want.zeros_like().unwrap());
        let rel = max_relative_difference(&got, &want).unwrap();
        assert!(
            rel <= REL_TOL,
            "gradient of {name} (JAX grad/{key}) differs by a relative {rel:e}"
        );
        if rel > worst.0 {
            worst = (rel, name);
        }
    }
    println!("worst gradient difference: {:e} ({})", worst.0, worst.1);
}

fn check_both_paths(file: &str) {
    let dump = load_dump(&fixture(file));
    check_step(&dump);
    with_portable_ops(|| check_step(&dump));
}

#[test]
fn a_state_step_matches_the_jax_reference_in_every_loss_and_gradient() {
    check_both_paths("jax-step-state.npz");
}

#[test]
fn a_pixel_step_matches_the_jax_reference_in_every_loss_and_gradient() {
    check_both_paths("jax-step-pixel.npz");
}

#[test]
fn the_fixture_names_map_one_to_one_onto_the_agents_parameters() {
    // Guards the mapping itself: two of our parameters never read the same JAX array.
    let dump = load_dump(&fixture("jax-step-pixel.npz"));
    let agent = agent_for(&dump);
    let mut seen = BTreeMap::new();
    for (name, _) in agent.parameters() {
        let (key, _) = jax_name(&name);
        if let Some(other) = seen.insert(key.clone(), name.clone()) {
            panic!("{name} and {other} both map to {key}");
        }
    }
    assert!(matches!(
        agent.model_config().obs,
        ObsKind::Pixels { size_px: 16, .. }
    ));
}
