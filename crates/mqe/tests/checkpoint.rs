//! Checkpoint round trips, resume exactness, and the errors for broken or mismatched files.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use mqe::checkpoint::{CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE};
use mqe::{ActionNorm, Agent, CheckpointMeta, MqeError};

fn meta() -> CheckpointMeta {
    CheckpointMeta {
        dataset: "data/pointmaze.npz".into(),
        episodes: 12,
        rows: 3456,
        input_crop_px: None,
        data_source: mqe::DataSource::Robot,
    }
}

fn trained_agent() -> Agent {
    let mut agent = small_agent(21);
    agent
        .set_action_norm(ActionNorm::new(vec![-0.5, 0.0], vec![0.5, 1.0]).unwrap())
        .unwrap();
    let batch = state_batch(6, 22, &Device::Cpu);
    for _ in 0..3 {
        agent.train_step(&batch).unwrap();
    }
    agent
}

fn saved() -> (Agent, tempfile::TempDir) {
    let agent = trained_agent();
    let dir = tempfile::tempdir().unwrap();
    agent.save(dir.path(), &meta()).unwrap();
    (agent, dir)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn round_trip_gives_identical_outputs_and_config() {
    let (agent, dir) = saved();
    let loaded = Agent::load(dir.path(), &Device::Cpu).unwrap();
    let batch = state_batch(6, 23, &Device::Cpu);
    assert_eq!(
        flat(&agent.act(&batch.obs, &batch.goal).unwrap()),
        flat(&loaded.act(&batch.obs, &batch.goal).unwrap())
    );
    assert_eq!(
        flat(&agent.distance(&batch.obs, &batch.goal).unwrap()),
        flat(&loaded.distance(&batch.obs, &batch.goal).unwrap())
    );
    assert_eq!(loaded.step(), 3);
    assert_eq!(loaded.action_norm(), agent.action_norm());
    assert_eq!(loaded.model_config(), agent.model_config());
    assert_eq!(loaded.train_config(), agent.train_config());
    let cfg = mqe::CheckpointConfig::read(dir.path()).unwrap();
    assert_eq!(cfg.data, meta());
    assert_eq!(cfg.step, 3);
    assert_eq!(cfg.observation.shape, vec![OBS_DIM]);
}

#[test]
fn resumed_training_takes_bit_identical_steps() {
    let (mut agent, dir) = saved();
    let mut resumed = Agent::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(resumed.optimizer().step_count(), 3);
    let batch = state_batch(6, 24, &Device::Cpu);
    for _ in 0..2 {
        let a = agent.train_step(&batch).unwrap();
        let b = resumed.train_step(&batch).unwrap();
        assert_eq!(a, b);
    }
    for ((name, x), (_, y)) in agent.parameters().iter().zip(resumed.parameters()) {
        assert_eq!(flat(x.as_tensor()), flat(y.as_tensor()), "{name}");
    }
}

#[test]
fn inference_checkpoint_loads_without_optimizer_state() {
    let agent = trained_agent();
    let dir = tempfile::tempdir().unwrap();
    agent.save_inference(dir.path(), &meta()).unwrap();
    assert!(!dir.path().join(OPTIMIZER_FILE).exists());
    let loaded = Agent::load(dir.path(), &Device::Cpu).unwrap();
    let batch = state_batch(6, 25, &Device::Cpu);
    assert_eq!(
        flat(&agent.act(&batch.obs, &batch.goal).unwrap()),
        flat(&loaded.act(&batch.obs, &batch.goal).unwrap())
    );
}

#[test]
fn truncated_model_file_is_reported_with_its_path() {
    let (_, dir) = saved();
    let path = dir.path().join(MODEL_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_load_fails_as_corrupt(dir.path(), MODEL_FILE);
}

/// Loading from `dir` fails with a corrupt-file error that names `file`.
fn assert_load_fails_as_corrupt(dir: &std::path::Path, file: &str) {
    let err = Agent::load(dir, &Device::Cpu).err().unwrap();
    assert!(matches!(err, MqeError::CorruptFile { .. }), "{err}");
    assert!(err.to_string().contains(file), "{err}");
}

#[test]
fn corrupt_optimizer_file_is_reported_with_its_path() {
    let (_, dir) = saved();
    std::fs::write(
        dir.path().join(OPTIMIZER_FILE),
        b"\xff\xff\xff\xff not safetensors",
    )
    .unwrap();
    assert_load_fails_as_corrupt(dir.path(), OPTIMIZER_FILE);
}

#[test]
fn missing_model_file_is_an_io_error_naming_it() {
    let (_, dir) = saved();
    std::fs::remove_file(dir.path().join(MODEL_FILE)).unwrap();
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(
        matches!(err, MqeError::Io { .. }) && err.to_string().contains(MODEL_FILE),
        "{err}"
    );
}

fn rewrite_tensors(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>),
) {
    let path = dir.join(MODEL_FILE);
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn wrong_tensor_shape_names_the_tensor_and_both_shapes() {
    let (_, dir) = saved();
    rewrite_tensors(dir.path(), |t| {
        t.insert(
            "psi.mlp.output.bias".into(),
            Tensor::zeros((2, 9), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, MqeError::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("psi.mlp.output.bias") && msg.contains("[2, 9]") && msg.contains("[2, 8]"),
        "{msg}"
    );
}

#[test]
fn missing_and_unexpected_tensors_are_named() {
    let (_, dir) = saved();
    rewrite_tensors(dir.path(), |t| {
        t.remove("actor.mean.weight");
    });
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(
        matches!(err, MqeError::MissingTensor { .. })
            && err.to_string().contains("actor.mean.weight"),
        "{err}"
    );

    let (_, dir) = saved();
    rewrite_tensors(dir.path(), |t| {
        t.insert(
            "actor.extra".into(),
            Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("actor.extra"), "{err}");
}

#[test]
fn architecture_mismatch_names_the_field() {
    let (_, dir) = saved();
    let mut expected = small_model();
    expected.latent_dim = 16;
    let err = Agent::load_expecting(dir.path(), &expected, &Device::Cpu)
        .err()
        .unwrap();
    assert!(
        matches!(&err, MqeError::ConfigMismatch { field, .. } if field == "model.latent_dim"),
        "{err}"
    );
    assert!(
        err.to_string().contains("16") && err.to_string().contains('8'),
        "{err}"
    );
    // The matching architecture loads.
    Agent::load_expecting(dir.path(), &small_model(), &Device::Cpu).unwrap();
}

fn edit_config(dir: &std::path::Path, from: &str, to: &str) {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "config.toml lacks {from:?}:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn config_errors_name_version_field_or_key() {
    let (_, dir) = saved();
    edit_config(dir.path(), "format_version = 1", "format_version = 99");
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(
        matches!(err, MqeError::FormatVersion { found: 99, .. }),
        "{err}"
    );

    let (_, dir) = saved();
    edit_config(dir.path(), "[train]\n", "[train]\nlearning_rate = 1.0\n");
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(
        err.to_string().contains("learning_rate") && err.to_string().contains(CONFIG_FILE),
        "{err}"
    );

    let (_, dir) = saved();
    edit_config(dir.path(), "dim = 2\n", "dim = 3\n");
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("action"), "{err}");

    let (_, dir) = saved();
    edit_config(dir.path(), "gamma = 0.9\n", "gamma = 1.5\n");
    let err = Agent::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(
        matches!(&err, MqeError::InvalidConfig { field, .. } if field == "gamma"),
        "{err}"
    );
}

#[test]
fn action_norm_maps_range_to_unit_box_and_back() {
    let norm = ActionNorm::new(vec![-0.5, 0.0, 2.0], vec![0.5, 1.0, 4.0]).unwrap();
    assert_eq!(
        norm.normalise(&[-0.5, 1.0, 3.0]).unwrap(),
        vec![-1.0, 1.0, 0.0]
    );
    let a = [0.1, 0.37, 3.3];
    let back = norm.denormalise(&norm.normalise(&a).unwrap()).unwrap();
    assert!(a.iter().zip(&back).all(|(x, y)| (x - y).abs() < 1e-6));
    assert_eq!(
        ActionNorm::identity(2).normalise(&[0.3, -1.0]).unwrap(),
        vec![0.3, -1.0]
    );
    assert!(ActionNorm::new(vec![1.0], vec![1.0]).is_err());
    assert!(norm.normalise(&[0.0]).is_err());
}

#[test]
fn configs_parse_with_defaults_and_reject_unknown_keys() {
    let m: mqe::ModelConfig =
        toml::from_str("action_dim = 7\n[obs]\nkind = \"pixels\"\nsize_px = 64\nchannels = 3\n")
            .unwrap();
    assert_eq!(m, mqe::ModelConfig::pixels(64, 3, 7));
    assert_eq!(m.encoder_out_size_px(), Some(8));
    assert!(
        toml::from_str::<mqe::ModelConfig>(
            "action_dim = 7\nwidth = 3\n[obs]\nkind = \"state\"\ndim = 2\n"
        )
        .is_err()
    );
    let t: mqe::TrainConfig = toml::from_str("gamma = 0.98\n").unwrap();
    assert_eq!(
        t,
        mqe::TrainConfig {
            gamma: 0.98,
            ..Default::default()
        }
    );
    assert!(toml::from_str::<mqe::TrainConfig>("gama = 0.98\n").is_err());
    assert_eq!(mqe::TrainConfig::bridge().gamma, 0.98);
    assert_eq!(mqe::TrainConfig::bridge().one_step_prob, 0.1);
}
