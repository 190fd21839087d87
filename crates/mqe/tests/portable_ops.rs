//! The portable path (candle ops + autograd, what a GPU runs) against the fast CPU kernels.
//!
//! Each test computes the same thing twice on the CPU: once as is (fast kernels) and once inside
//! `mqe::ops::with_portable_ops`, which forces the code every non-CPU device takes. Outputs,
//! every gradient and the parameters after several Adam steps must agree to a relative 1e-5.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use mqe::ops::{
    conv2d_same, max_pool_3x3_s2_same, mrn_pairwise, mrn_pairwise_chunked, with_portable_ops,
};
use mqe::{Agent, Algo, Batch, ModelConfig, TrainConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};

const REL_TOL: f32 = 1e-5;
/// Parameters after a few Adam steps, relative to each tensor's largest entry (see
/// `compare_agents`).
const AFTER_ADAM_REL_TOL: f32 = 5e-5;

fn assert_close(what: &str, portable: &Tensor, fast: &Tensor) {
    let d = mqe::ops::max_relative_difference(portable, fast).unwrap();
    assert!(
        d <= REL_TOL,
        "{what}: portable and fast differ by a relative {d:e}"
    );
}

fn var(rng: &mut StdRng, dims: &[usize], scale: f32) -> Var {
    let n = dims.iter().product();
    let data = common::rand_vec(rng, n, scale);
    Var::from_tensor(&Tensor::from_vec(data, dims, &Device::Cpu).unwrap()).unwrap()
}

/// A fixed random upstream gradient: the loss is sum(out * weights).
fn weighted_sum(out: &Tensor, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let w = common::rand_vec(&mut rng, out.elem_count(), 1.0);
    let w = Tensor::from_vec(w, out.dims(), out.device()).unwrap();
    (out * w).unwrap().sum_all().unwrap()
}

/// Output and input gradients of `f` on both paths.
fn both_paths(
    inputs: &[&Var],
    f: impl Fn() -> Tensor,
) -> ((Tensor, Vec<Tensor>), (Tensor, Vec<Tensor>)) {
    let run = || {
        let out = f();
        let grads = weighted_sum(&out, 99).backward().unwrap();
        let g = inputs
            .iter()
            .map(|v| grads.get(v.as_tensor()).expect("gradient").clone())
            .collect();
        (out, g)
    };
    let fast = run();
    let portable = with_portable_ops(run);
    (fast, portable)
}

#[test]
fn the_portable_pool_gives_each_gradient_to_the_first_maximum_of_its_window() {
    // A flat plane: every window ties everywhere. Each output's gradient must land on exactly one
    // pixel, the first of its window in row-major order (candle's `max` would share it).
    let x =
        Var::from_tensor(&Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let out = with_portable_ops(|| max_pool_3x3_s2_same(x.as_tensor()).unwrap());
    assert_eq!(out.dims(), &[1, 1, 2, 2]);
    let grads = out.sum_all().unwrap().backward().unwrap();
    let g: Vec<f32> = grads
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // SAME padding of 4: none before, one after; windows start at rows/columns 0 and 2.
    let mut expected = vec![0f32; 16];
    for at in [0, 2, 8, 10] {
        expected[at] = 1.0;
    }
    assert_eq!(g, expected);
}

#[test]
fn the_portable_pool_equals_the_fast_one_on_ties_and_odd_sizes() {
    let mut rng = StdRng::seed_from_u64(1);
    for (h, w) in [(7, 5), (8, 8), (1, 3), (2, 9)] {
        // Values from a small set, so that ties are everywhere, and -0.0 / 0.0 pairs (ReLU zeros).
        let n = 2 * 3 * h * w;
        let data: Vec<f32> = (0..n)
            .map(|_| [0.0, -0.0, 1.0, 2.0, -1.5][rng.random_range(0..5)])
            .collect();
        let x =
            Var::from_tensor(&Tensor::from_vec(data, (2, 3, h, w), &Device::Cpu).unwrap()).unwrap();
        let ((out_f, g_f), (out_p, g_p)) =
            both_paths(&[&x], || max_pool_3x3_s2_same(x.as_tensor()).unwrap());
        assert_close(&format!("pool {h}x{w} output"), &out_p, &out_f);
        assert_close(&format!("pool {h}x{w} gradient"), &g_p[0], &g_f[0]);
    }
}

#[test]
fn the_portable_conv_equals_the_fast_one_for_every_odd_kernel() {
    let mut rng = StdRng::seed_from_u64(2);
    for k in [1, 3, 5] {
        let x = var(&mut rng, &[2, 3, 7, 6], 1.0);
        let w = var(&mut rng, &[4, 3, k, k], 0.3);
        let b = var(&mut rng, &[4], 0.3);
        let ((out_f, g_f), (out_p, g_p)) = both_paths(&[&x, &w, &b], || {
            conv2d_same(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap()
        });
        assert_close(&format!("conv {k}x{k} output"), &out_p, &out_f);
        for (name, (p, f)) in ["input", "weight", "bias"].iter().zip(g_p.iter().zip(&g_f)) {
            assert_close(&format!("conv {k}x{k} {name} gradient"), p, f);
        }
    }
}

#[test]
fn chunked_pairwise_mrn_equals_unchunked_and_the_fast_kernel() {
    let mut rng = StdRng::seed_from_u64(3);
    let x = var(&mut rng, &[2, 5, 16], 1.0);
    let y = var(&mut rng, &[2, 7, 16], 1.0);
    let run = |chunk: usize| {
        let out = with_portable_ops(|| {
            mrn_pairwise_chunked(x.as_tensor(), y.as_tensor(), 2, chunk).unwrap()
        });
        let grads = weighted_sum(&out, 5).backward().unwrap();
        let gx = grads.get(x.as_tensor()).unwrap().clone();
        let gy = grads.get(y.as_tensor()).unwrap().clone();
        (out, gx, gy)
    };
    let whole = run(7);
    for chunk in [1, 3, 6, 100] {
        let part = run(chunk);
        assert_close(&format!("chunk {chunk} output"), &part.0, &whole.0);
        assert_close(&format!("chunk {chunk} dx"), &part.1, &whole.1);
        assert_close(&format!("chunk {chunk} dy"), &part.2, &whole.2);
    }
    let ((out_f, g_f), (out_p, g_p)) = both_paths(&[&x, &y], || {
        mrn_pairwise(x.as_tensor(), y.as_tensor(), 2).unwrap()
    });
    assert_close("pairwise output", &out_p, &out_f);
    assert_close("pairwise dx", &g_p[0], &g_f[0]);
    assert_close("pairwise dy", &g_p[1], &g_f[1]);
    assert!(mrn_pairwise_chunked(x.as_tensor(), y.as_tensor(), 2, 0).is_err());
}

#[test]
fn portable_mrn_sends_no_gradient_through_a_zero_or_tied_maximum() {
    // x == y: every difference is 0, the relu(max) term is 0 and must pass no gradient (candle's
    // relu passes it at 0); only the symmetric term's (zero) gradient remains.
    let mut rng = StdRng::seed_from_u64(4);
    let x = var(&mut rng, &[1, 3, 8], 1.0);
    let y = Var::from_tensor(&x.as_tensor().copy().unwrap()).unwrap();
    let ((_, g_f), (_, g_p)) = both_paths(&[&x, &y], || {
        mqe::ops::mrn_matched(x.as_tensor(), y.as_tensor(), 2).unwrap()
    });
    assert_close("matched dx at x == y", &g_p[0], &g_f[0]);
    assert_close("matched dy at x == y", &g_p[1], &g_f[1]);
}

#[test]
fn the_portable_dense_layers_equal_the_fused_ones() {
    let mut rng = StdRng::seed_from_u64(6);
    let x = var(&mut rng, &[2, 5, 8], 2.0);
    let p1 = var(&mut rng, &[2, 8], 1.0);
    let p2 = var(&mut rng, &[2, 8], 1.0);
    let ((o_f, g_f), (o_p, g_p)) = both_paths(&[&x, &p1], || {
        mqe::fused::bias_gelu(x.as_tensor(), p1.as_tensor()).unwrap()
    });
    assert_close("bias_gelu", &o_p, &o_f);
    assert_close("bias_gelu dx", &g_p[0], &g_f[0]);
    assert_close("bias_gelu dbias", &g_p[1], &g_f[1]);
    let ((o_f, g_f), (o_p, g_p)) = both_paths(&[&x, &p1, &p2], || {
        mqe::fused::layer_norm_affine(x.as_tensor(), p1.as_tensor(), p2.as_tensor(), 1e-6).unwrap()
    });
    assert_close("layer_norm", &o_p, &o_f);
    for (name, (p, f)) in ["dx", "dscale", "dbias"].iter().zip(g_p.iter().zip(&g_f)) {
        assert_close(&format!("layer_norm {name}"), p, f);
    }
}

fn pixel_model(algo: Algo) -> ModelConfig {
    let mut m = ModelConfig::pixels(16, 3, 4);
    (m.latent_dim, m.mrn_components, m.encoder_dim) = (16, 2, 16);
    (m.mlp_hidden, m.actor_hidden) = (vec![16], vec![16]);
    m.algo = algo;
    m
}

fn state_model(algo: Algo) -> ModelConfig {
    let mut m = common::small_model();
    m.algo = algo;
    m
}

/// Images of flat coloured rectangles on a flat table: pooling windows tie all over them.
fn block_images(rng: &mut StdRng, b: usize) -> Tensor {
    let side = 16;
    let mut data = vec![90u8; b * side * side * 3];
    for img in data.chunks_mut(side * side * 3) {
        for _ in 0..3 {
            let (y0, x0) = (rng.random_range(0..12), rng.random_range(0..12));
            let colour = [rng.random::<u8>(), rng.random::<u8>(), rng.random::<u8>()];
            for y in y0..y0 + 4 {
                for x in x0..x0 + 4 {
                    img[(y * side + x) * 3..][..3].copy_from_slice(&colour);
                }
            }
        }
    }
    Tensor::from_vec(data, (b, side, side, 3), &Device::Cpu).unwrap()
}

fn pixel_batch(b: usize, seed: u64) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let state = common::state_batch(b, seed, &Device::Cpu);
    let mut img = || block_images(&mut rng, b);
    Batch {
        obs: img(),
        next_obs: img(),
        goal: img(),
        waypoint: img(),
        waypoint_offset: state.waypoint_offset,
        actor_goal: img(),
        action: Tensor::from_vec(common::rand_vec(&mut rng, b * 4, 1.0), (b, 4), &Device::Cpu)
            .unwrap(),
    }
}

fn loss_and_grads(agent: &Agent, batch: &Batch) -> (Tensor, Vec<(String, Tensor)>) {
    agent.loss_and_gradients(batch).unwrap()
}

/// Losses and gradients of one step, then the parameters after `steps` Adam steps, both ways.
fn compare_agents(model: ModelConfig, batches: &[Batch]) {
    let train = TrainConfig {
        batch_size: batches[0].obs.dim(0).unwrap(),
        gamma: 0.9,
        ..TrainConfig::default()
    };
    let mut fast = Agent::new(model.clone(), train.clone(), &Device::Cpu).unwrap();
    let mut portable = Agent::new(model, train, &Device::Cpu).unwrap();

    let (loss_f, grads_f) = loss_and_grads(&fast, &batches[0]);
    let (loss_p, grads_p) = with_portable_ops(|| loss_and_grads(&portable, &batches[0]));
    assert_close("total loss", &loss_p, &loss_f);
    let names = |g: &[(String, Tensor)]| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&grads_p),
        names(&grads_f),
        "parameters with a gradient"
    );
    assert!(grads_f.len() >= 4, "only {} gradients", grads_f.len());
    for ((name, p), (_, f)) in grads_p.iter().zip(&grads_f) {
        assert_close(&format!("gradient of {name}"), p, f);
    }

    for batch in batches {
        let m_f = fast.train_step(batch).unwrap();
        let m_p = with_portable_ops(|| portable.train_step(batch).unwrap());
        let rel = (m_p.total_loss - m_f.total_loss).abs() / m_f.total_loss.abs().max(1e-12);
        assert!(rel <= REL_TOL, "train-step loss differs by {rel:e}");
        assert_eq!(m_p.pair_accuracy, m_f.pair_accuracy);
    }
    // The values, relative to each tensor's largest entry. Not the change of each entry: Adam
    // divides by sqrt(v) + eps, so an entry whose gradient is rounding noise (1e-13 on one path,
    // 0 on the other) moves by a visibly different fraction of lr. The gradients above are the
    // strict check; this one shows that the optimiser's two paths apply them alike.
    // Measured worst cases: 1.1e-5 to 1.6e-5 (actor encoder, depending on the initial weights),
    // hence a looser bound than the gradients' 1e-5.
    let after = portable.parameters().into_iter().zip(fast.parameters());
    for ((name, p), (_, f)) in after {
        let d = mqe::ops::max_relative_difference(p.as_tensor(), f.as_tensor()).unwrap();
        assert!(
            d <= AFTER_ADAM_REL_TOL,
            "{name} after Adam: portable and fast differ by a relative {d:e}"
        );
    }
    assert_eq!(portable.step(), batches.len() as u64);
}

#[test]
fn state_mqe_steps_agree_on_both_paths() {
    compare_agents(state_model(Algo::Mqe), &state_batches(10));
}

/// Three state batches of 6, seeded `first`, `first + 1` and `first + 2`.
fn state_batches(first: u64) -> Vec<Batch> {
    (0..3)
        .map(|s| common::state_batch(6, first + s, &Device::Cpu))
        .collect()
}

#[test]
fn state_gcbc_steps_agree_on_both_paths() {
    compare_agents(state_model(Algo::Gcbc), &state_batches(20));
}

#[test]
fn pixel_mqe_steps_agree_on_both_paths() {
    let batches: Vec<_> = (0..3).map(|s| pixel_batch(4, 30 + s)).collect();
    compare_agents(pixel_model(Algo::Mqe), &batches);
}

#[test]
fn pixel_gcbc_steps_agree_on_both_paths() {
    let batches: Vec<_> = (0..3).map(|s| pixel_batch(4, 40 + s)).collect();
    compare_agents(pixel_model(Algo::Gcbc), &batches);
}

/// Whether this process was started with the switch on (the child run below sets it).
fn env_forces_portable() -> bool {
    std::env::var(mqe::ops::PORTABLE_OPS_ENV).is_ok_and(|v| v == "1")
}

#[test]
fn the_switch_follows_the_environment_variable_and_the_scoped_api() {
    assert_eq!(mqe::ops::portable_ops_forced(), env_forces_portable());
    with_portable_ops(|| assert!(mqe::ops::portable_ops_forced()));
    assert_eq!(
        mqe::ops::portable_ops_forced(),
        env_forces_portable(),
        "the scope must end"
    );
}

#[test]
fn a_process_started_with_the_environment_variable_takes_the_portable_path() {
    // The test above, in a fresh process of this binary with the variable set.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_switch_follows_the_environment_variable_and_the_scoped_api",
        ])
        .env(mqe::ops::PORTABLE_OPS_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child run failed:\n{stdout}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
}

fn shared_encoder_model() -> ModelConfig {
    ModelConfig {
        shared_critic_encoder: true,
        ..pixel_model(Algo::Mqe)
    }
}

#[test]
fn pixel_mqe_with_a_shared_critic_encoder_agrees_on_both_paths() {
    let batches: Vec<_> = (0..3).map(|s| pixel_batch(4, 30 + s)).collect();
    compare_agents(shared_encoder_model(), &batches);
}

#[test]
fn a_shared_critic_encoder_is_two_tied_encoders() {
    // The shared model equals the separate one whose psi encoder holds phi's weights: same
    // loss, and the shared encoder's gradient is the sum of the two tied encoders' gradients.
    let train = TrainConfig {
        batch_size: 4,
        gamma: 0.9,
        ..TrainConfig::default()
    };
    let shared = Agent::new(shared_encoder_model(), train.clone(), &Device::Cpu).unwrap();
    let separate = Agent::new(pixel_model(Algo::Mqe), train, &Device::Cpu).unwrap();
    let shared_params: std::collections::BTreeMap<_, _> = shared.parameters().into_iter().collect();
    assert!(
        !shared_params.keys().any(|k| k.starts_with("psi.encoder")),
        "no psi encoder of its own"
    );
    for (name, var) in separate.parameters() {
        let source = name.replace("psi.encoder", "phi.encoder");
        var.set(shared_params[&source].as_tensor()).unwrap();
    }
    let batch = pixel_batch(4, 60);
    let (loss_s, grads_s) = shared.loss_and_gradients(&batch).unwrap();
    let (loss_p, grads_p) = separate.loss_and_gradients(&batch).unwrap();
    assert_close("loss", &loss_s, &loss_p);
    let grads_p: std::collections::BTreeMap<_, _> = grads_p.into_iter().collect();
    for (name, g_s) in &grads_s {
        let want = match name.strip_prefix("phi.encoder") {
            Some(rest) => (&grads_p[name] + &grads_p[&format!("psi.encoder{rest}")]).unwrap(),
            None => grads_p[name].clone(),
        };
        assert_close(&format!("gradient of {name}"), g_s, &want);
    }
    let psi_encoder_grads = grads_p
        .keys()
        .filter(|k| k.starts_with("psi.encoder"))
        .count();
    assert!(psi_encoder_grads >= 8, "{psi_encoder_grads}");
    assert_eq!(grads_s.len() + psi_encoder_grads, grads_p.len());
}
