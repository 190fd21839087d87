//! GoalImage loading and MqePolicy on small random checkpoints written by the test.

use std::path::{Path, PathBuf};

use bridge_run::policy::{GoalImage, MqePolicy, Policy, PolicyError, PolicyOutput};
use candle_core::{DType, Device, Tensor};
use mqe::{ActionNorm, Agent, Algo, CheckpointMeta, ModelConfig, TrainConfig};

const SIZE_PX: u32 = 64;

/// Narrow networks so that building and running them takes milliseconds.
fn narrow(mut model: ModelConfig) -> ModelConfig {
    model.latent_dim = 32;
    model.mlp_hidden = vec![32];
    model.actor_hidden = vec![32];
    model.encoder_dim = 32;
    model
}

/// Bridge-like action ranges (metres, radians, gripper 0..1).
fn bridge_norm() -> ActionNorm {
    ActionNorm::new(
        vec![-0.03, -0.03, -0.03, -0.2, -0.2, -0.2, 0.0],
        vec![0.03, 0.03, 0.03, 0.2, 0.2, 0.2, 1.0],
    )
    .unwrap()
}

fn save_checkpoint(dir: &Path, model: ModelConfig) -> PathBuf {
    let mut agent = Agent::new(model.clone(), TrainConfig::pixels(), &Device::Cpu).unwrap();
    if model.action_dim == 7 {
        agent.set_action_norm(bridge_norm()).unwrap();
    }
    let path = dir.join("ckpt");
    agent
        .save_inference(&path, &CheckpointMeta::default())
        .unwrap();
    path
}

fn pixel_checkpoint(dir: &Path) -> PathBuf {
    save_checkpoint(dir, narrow(ModelConfig::pixels(SIZE_PX as usize, 3, 7)))
}

/// A deterministic RGB pattern of `w x h`.
fn pattern(w: u32, h: u32, seed: u32) -> Vec<u8> {
    (0..w * h * 3)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed * 7919)) >> 13) as u8)
        .collect()
}

fn write_image(path: &Path, w: u32, h: u32, format: image::ImageFormat) {
    let img = image::RgbImage::from_raw(w, h, pattern(w, h, 1)).unwrap();
    img.save_with_format(path, format).unwrap();
}

fn goal_from_pattern(seed: u32) -> GoalImage {
    GoalImage::from_rgb(
        Path::new("memory"),
        &pattern(SIZE_PX, SIZE_PX, seed),
        SIZE_PX,
        SIZE_PX,
        SIZE_PX,
    )
    .unwrap()
}

#[test]
fn png_goal_is_squashed_like_observations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goal.png");
    write_image(&path, 640, 480, image::ImageFormat::Png);
    let goal = GoalImage::load(&path, SIZE_PX, Some((640, 480))).unwrap();
    assert_eq!(goal.size_px, SIZE_PX);
    assert_eq!(goal.path, path);
    let mut expected = Vec::new();
    camera::preprocess::squash_rgb(&pattern(640, 480, 1), 640, 480, SIZE_PX, &mut expected)
        .unwrap();
    assert_eq!(goal.model_rgb, expected);
}

#[test]
fn jpeg_goal_loads_without_a_size_requirement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goal.jpg");
    write_image(&path, 320, 200, image::ImageFormat::Jpeg);
    let goal = GoalImage::load(&path, 32, None).unwrap();
    assert_eq!(goal.model_rgb.len(), 32 * 32 * 3);
}

#[test]
fn goal_of_the_wrong_size_names_file_size_and_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small_goal.png");
    write_image(&path, 320, 240, image::ImageFormat::Png);
    let err = GoalImage::load(&path, SIZE_PX, Some((640, 480))).unwrap_err();
    assert!(matches!(err, PolicyError::GoalSize { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("small_goal.png") && msg.contains("320x240") && msg.contains("640x480"),
        "{msg}"
    );
}

#[test]
fn goal_that_is_not_an_image_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.png");
    std::fs::write(&path, "this is text, not a picture").unwrap();
    let err = GoalImage::load(&path, SIZE_PX, None).unwrap_err();
    assert!(matches!(err, PolicyError::GoalFormat { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("notes.png") && msg.contains("PNG or JPEG"),
        "{msg}"
    );
}

#[test]
fn truncated_png_and_gif_goals_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("cut.png");
    write_image(&png, 64, 64, image::ImageFormat::Png);
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
    let err = GoalImage::load(&png, SIZE_PX, None).unwrap_err();
    assert!(
        matches!(err, PolicyError::GoalFormat { .. }) && err.to_string().contains("corrupt Png"),
        "{err}"
    );

    let gif = dir.path().join("goal.gif");
    write_image(&gif, 64, 64, image::ImageFormat::Gif);
    let err = GoalImage::load(&gif, SIZE_PX, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("goal.gif") && msg.contains("Gif image"),
        "{msg}"
    );
}

#[test]
fn missing_goal_is_an_io_error_naming_the_file() {
    let err = GoalImage::load(Path::new("/nonexistent/goal.png"), SIZE_PX, None).unwrap_err();
    assert!(matches!(err, PolicyError::GoalIo { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/goal.png"), "{err}");
}

#[test]
fn policy_output_is_the_denormalised_clipped_actor_mean() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = pixel_checkpoint(dir.path());
    let mut policy = MqePolicy::load(&ckpt, &Device::Cpu).unwrap();
    assert_eq!(policy.input_size_px(), SIZE_PX);
    assert!(policy.has_distance());
    let goal = goal_from_pattern(2);
    policy.set_goal(&goal).unwrap();
    let obs = pattern(SIZE_PX, SIZE_PX, 3);
    let out = policy.act(&obs).unwrap();
    assert!(out.is_finite() && out.distance_is_finite(), "{out:?}");
    assert!(out.inference_s > 0.0);

    // The same computation done by hand on a separately loaded agent.
    let agent = Agent::load(&ckpt, &Device::Cpu).unwrap();
    let image = |rgb: &[u8]| {
        Tensor::from_slice(
            rgb,
            (1, SIZE_PX as usize, SIZE_PX as usize, 3),
            &Device::Cpu,
        )
        .unwrap()
    };
    let (obs_t, goal_t) = (image(&obs), image(&goal.model_rgb));
    let mu = agent
        .act(&obs_t, &goal_t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let expected = bridge_norm().denormalise(&mu).unwrap();
    assert_eq!(out.action.to_vec(), expected);
    let d = agent
        .distance(&obs_t, &goal_t)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0];
    // The policy encodes the goal once (at set_goal) and the observation alone each step;
    // `distance` encodes both in one batch, so only the summation order differs.
    assert!(
        (out.distance - d).abs() <= 1e-5 * d.abs().max(1e-3),
        "{} vs {d}",
        out.distance
    );

    // Within the dataset ranges (clip before denormalising), and deterministic.
    let norm = bridge_norm();
    for (i, a) in out.action.iter().enumerate() {
        assert!(*a >= norm.low[i] && *a <= norm.high[i], "dim {i}: {a}");
    }
    let again = policy.act(&obs).unwrap();
    assert_eq!((again.action, again.distance), (out.action, out.distance));
}

#[test]
fn distance_to_itself_is_zero_and_smaller_than_to_another_goal() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = MqePolicy::load(&pixel_checkpoint(dir.path()), &Device::Cpu).unwrap();
    let obs = pattern(SIZE_PX, SIZE_PX, 5);
    policy
        .set_goal(&GoalImage::from_rgb(Path::new("self"), &obs, SIZE_PX, SIZE_PX, SIZE_PX).unwrap())
        .unwrap();
    let to_self = policy.act(&obs).unwrap().distance;
    policy.set_goal(&goal_from_pattern(6)).unwrap();
    let to_other = policy.act(&obs).unwrap().distance;
    // MRN: d(x, x) = mean_c sqrt(1e-12) / sqrt(latent) ~ 4e-8.
    assert!(to_self < 1e-5, "d(x, x) = {to_self}");
    assert!(
        to_other > to_self,
        "d(x, y) = {to_other}, d(x, x) = {to_self}"
    );
}

#[test]
fn act_checks_goal_and_observation() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = MqePolicy::load(&pixel_checkpoint(dir.path()), &Device::Cpu).unwrap();
    let obs = pattern(SIZE_PX, SIZE_PX, 1);
    assert!(matches!(policy.act(&obs), Err(PolicyError::NoGoal)));

    let small = GoalImage::from_rgb(Path::new("small"), &pattern(32, 32, 1), 32, 32, 32).unwrap();
    let err = policy.set_goal(&small).unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::GoalModelSize {
                goal_px: 32,
                policy_px: 64,
                ..
            }
        ),
        "{err}"
    );

    policy.set_goal(&goal_from_pattern(1)).unwrap();
    let err = policy.act(&obs[..100]).unwrap_err();
    assert!(err.to_string().contains("64x64x3 = 12288"), "{err}");
}

fn refusal(model: ModelConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = save_checkpoint(dir.path(), model);
    let err = MqePolicy::load(&ckpt, &Device::Cpu)
        .err()
        .expect("must be refused");
    assert!(matches!(err, PolicyError::Incompatible { .. }), "{err}");
    err.to_string()
}

#[test]
fn checkpoints_that_do_not_fit_the_robot_are_refused_naming_the_field() {
    let state = refusal(narrow(ModelConfig::state(7, 7)));
    assert!(
        state.contains("`model.obs`") && state.contains("state"),
        "{state}"
    );
    let grey = refusal(narrow(ModelConfig::pixels(SIZE_PX as usize, 1, 7)));
    assert!(
        grey.contains("`model.obs.channels`") && grey.contains("is 1"),
        "{grey}"
    );
    let five = refusal(narrow(ModelConfig::pixels(SIZE_PX as usize, 3, 5)));
    assert!(
        five.contains("`model.action_dim`") && five.contains("is 5"),
        "{five}"
    );
}

#[test]
fn missing_checkpoint_names_the_directory() {
    let err = MqePolicy::load(Path::new("/nonexistent/ckpt"), &Device::Cpu)
        .err()
        .expect("must fail");
    assert!(matches!(err, PolicyError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/ckpt"), "{err}");
}

#[test]
fn checkpoint_with_nan_parameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = narrow(ModelConfig::pixels(SIZE_PX as usize, 3, 7));
    let agent = Agent::new(model, TrainConfig::pixels(), &Device::Cpu).unwrap();
    let (name, var) = agent.parameters().pop().unwrap();
    let nan = (var.as_tensor().ones_like().unwrap() * f64::NAN).unwrap();
    var.set(&nan.to_dtype(DType::F32).unwrap()).unwrap();
    let ckpt = dir.path().join("ckpt");
    agent
        .save_inference(&ckpt, &CheckpointMeta::default())
        .unwrap();
    let err = MqePolicy::load(&ckpt, &Device::Cpu)
        .err()
        .expect("must be refused");
    assert!(
        matches!(err, PolicyError::NonFiniteParameter { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&name), "{err}");
}

#[test]
fn gcbc_checkpoint_acts_without_a_distance() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = narrow(ModelConfig::pixels(SIZE_PX as usize, 3, 7));
    model.algo = Algo::Gcbc;
    let mut policy = MqePolicy::load(&save_checkpoint(dir.path(), model), &Device::Cpu).unwrap();
    assert!(!policy.has_distance());
    policy.set_goal(&goal_from_pattern(1)).unwrap();
    let out = policy.act(&pattern(SIZE_PX, SIZE_PX, 2)).unwrap();
    assert!(out.is_finite(), "{out:?}");
    assert!(out.distance.is_nan() && !out.distance_is_finite());
}

#[test]
fn non_finite_actions_are_flagged() {
    let ok = PolicyOutput {
        action: [0.0; 7],
        distance: 1.0,
        inference_s: 0.01,
    };
    assert!(ok.is_finite());
    let mut nan = ok;
    nan.action[3] = f32::NAN;
    assert!(!nan.is_finite());
    let mut inf = ok;
    inf.action[6] = f32::INFINITY;
    assert!(!inf.is_finite());
}

#[test]
fn policy_error_stays_small_for_the_errors_that_wrap_it() {
    // clippy's result_large_err threshold is 128 bytes; the runtime's error enum holds this one.
    assert!(
        std::mem::size_of::<PolicyError>() <= 96,
        "{}",
        std::mem::size_of::<PolicyError>()
    );
}

#[test]
fn the_checkpoint_crop_is_applied_to_goals_and_a_goal_with_another_view_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = narrow(ModelConfig::pixels(SIZE_PX as usize, 3, 7));
    let mut agent = Agent::new(model, TrainConfig::pixels(), &Device::Cpu).unwrap();
    agent.set_action_norm(bridge_norm()).unwrap();
    let ckpt = dir.path().join("cropped");
    let meta = CheckpointMeta {
        input_crop_px: Some([100, 50, 320, 320]),
        ..CheckpointMeta::default()
    };
    agent.save_inference(&ckpt, &meta).unwrap();
    let mut policy = MqePolicy::load(&ckpt, &Device::Cpu).unwrap();
    let view = policy.input_view();
    assert_eq!(view.size_px, SIZE_PX);
    assert_eq!(view.crop.map(|c| c.to_array()), Some([100, 50, 320, 320]));

    // The goal as the policy sees it is the crop, squashed: the same bytes as the crop cut out
    // by hand and squashed whole.
    let frame = pattern(640, 480, 3);
    let goal = GoalImage::from_rgb(Path::new("frame"), &frame, 640, 480, view).unwrap();
    let mut region = Vec::new();
    for y in 50..370 {
        region.extend_from_slice(&frame[(y * 640 + 100) * 3..(y * 640 + 420) * 3]);
    }
    let mut expected = Vec::new();
    camera::preprocess::squash_rgb(&region, 320, 320, SIZE_PX, &mut expected).unwrap();
    assert_eq!(goal.model_rgb, expected);
    policy.set_goal(&goal).unwrap();

    // The whole frame squashed is not what this policy was trained on.
    let whole = GoalImage::from_rgb(Path::new("whole"), &frame, 640, 480, SIZE_PX).unwrap();
    let err = policy.set_goal(&whole).unwrap_err();
    assert!(matches!(err, PolicyError::GoalCrop { .. }), "{err}");
    assert!(err.to_string().contains("trained on"), "{err}");
}
