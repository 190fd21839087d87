//! `policy-server` as a process: stdin/stdout and TCP answers equal the checkpoint's own
//! actions and distances, malformed lines get errors, pixels work, and `--bench` reports latency.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use candle_core::{DType, Device, Tensor};
use mqe::{ActionNorm, Agent, Batch, CheckpointMeta, ModelConfig, TrainConfig};
use serde_json::Value;

const B: usize = 8;

/// Trains a small agent for a few steps on random data and saves it; the action map is not the
/// identity, so de-normalisation is visible in the answers.
fn checkpoint(dir: &Path, mut model: ModelConfig) -> Agent {
    (
        model.latent_dim,
        model.mrn_components,
        model.mlp_hidden,
        model.actor_hidden,
        model.encoder_dim,
    ) = (16, 2, vec![16], vec![16], 16);
    let dev = Device::Cpu;
    let train = TrainConfig {
        batch_size: B,
        ..TrainConfig::default()
    };
    let mut agent = Agent::new(model.clone(), train, &dev).unwrap();
    let a = model.action_dim;
    agent
        .set_action_norm(
            ActionNorm::new(vec![-2.0; a], (0..a).map(|i| 3.0 + i as f32).collect()).unwrap(),
        )
        .unwrap();
    let obs = || match model.obs {
        mqe::ObsKind::State { dim } => Tensor::randn(0f32, 1., (B, dim), &dev).unwrap(),
        mqe::ObsKind::Pixels { size_px, channels } => {
            Tensor::rand(0f32, 255., (B, size_px, size_px, channels), &dev)
                .unwrap()
                .to_dtype(DType::U8)
                .unwrap()
        }
    };
    for _ in 0..3 {
        let batch = Batch {
            obs: obs(),
            next_obs: obs(),
            goal: obs(),
            waypoint: obs(),
            waypoint_offset: Tensor::ones(B, DType::F32, &dev).unwrap(),
            actor_goal: obs(),
            action: Tensor::rand(-1f32, 1., (B, a), &dev).unwrap(),
        };
        agent.train_step(&batch).unwrap();
    }
    agent.save(dir, &CheckpointMeta::default()).unwrap();
    Agent::load(dir, &dev).unwrap()
}

fn server(dir: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_policy-server"))
        .arg(dir)
        .args(["--device", "cpu"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What the server must answer for a state request.
fn expected(agent: &Agent, obs: &[f32], goal: &[f32]) -> (Vec<f32>, f32) {
    let dev = Device::Cpu;
    let o = Tensor::from_slice(obs, (1, obs.len()), &dev).unwrap();
    let g = Tensor::from_slice(goal, (1, goal.len()), &dev).unwrap();
    answer_for(agent, &o, &g)
}

/// What the server must answer for one query: the de-normalised action and the distance.
fn answer_for(agent: &Agent, obs: &Tensor, goal: &Tensor) -> (Vec<f32>, f32) {
    let a: Vec<f32> = agent
        .act(obs, goal)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let d = agent.distance(obs, goal).unwrap().to_vec1::<f32>().unwrap()[0];
    (agent.action_norm().denormalise(&a).unwrap(), d)
}

fn assert_answer(answer: &Value, want: &(Vec<f32>, f32)) {
    let action: Vec<f32> = answer["action"]
        .as_array()
        .unwrap_or_else(|| panic!("no action in {answer}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(action.len(), want.0.len());
    for (a, b) in action.iter().zip(&want.0) {
        assert!((a - b).abs() <= 1e-6, "action {action:?} vs {:?}", want.0);
    }
    let d = answer["distance"].as_f64().unwrap() as f32;
    assert!((d - want.1).abs() <= 1e-6, "distance {d} vs {}", want.1);
}

fn error_of(answer: &Value) -> &str {
    answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {answer}"))
}

#[test]
fn stdin_answers_match_the_checkpoint_and_bad_lines_get_errors() {
    let dir = tempfile::tempdir().unwrap();
    let agent = checkpoint(dir.path(), ModelConfig::state(3, 2));
    let mut child = server(dir.path(), &[]);
    let requests = [
        r#"{"obs": [0.1, 0.2, 0.3], "goal": [1, 2, 3]}"#,
        "{oops",
        "",
        r#"{"obs": [0.1, 0.2], "goal": [1, 2, 3]}"#,
        r#"{"obs": [0.1, 0.2, NaN], "goal": [1, 2, 3]}"#,
        r#"{"obs": [0.1, 0.2, 0.3], "goal": [1, 2, 1e300]}"#,
        r#"{"obs": [-1, 0, 1], "goal": [0, 0, 0], "id": "last"}"#,
    ];
    let mut stdin = child.stdin.take().unwrap();
    for r in requests {
        writeln!(stdin, "{r}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        answers.len(),
        6,
        "one answer per non-empty line: {answers:?}"
    );
    assert_answer(
        &answers[0],
        &expected(&agent, &[0.1, 0.2, 0.3], &[1.0, 2.0, 3.0]),
    );
    assert!(error_of(&answers[1]).contains("invalid JSON"));
    assert!(error_of(&answers[2]).contains("`obs` has 2 values"));
    assert!(
        error_of(&answers[3]).contains("invalid JSON"),
        "NaN is not JSON"
    );
    assert!(error_of(&answers[4]).contains("`goal`[2]"));
    assert_answer(
        &answers[5],
        &expected(&agent, &[-1.0, 0.0, 1.0], &[0.0, 0.0, 0.0]),
    );
    assert_eq!(answers[5]["id"], "last");
    // De-normalised: the first answer's actions lie in the data range [-2, 3] x [-2, 4].
    let a0 = answers[0]["action"][0].as_f64().unwrap();
    assert!((-2.0..=3.0).contains(&a0));
}

/// Kills the spawned server when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ask(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) -> Value {
    writeln!(stream, "{line}").unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn tcp_serves_concurrent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let agent = checkpoint(dir.path(), ModelConfig::state(2, 2));
    let mut child = KillOnDrop(server(dir.path(), &["--listen", "127.0.0.1:0"]));
    let mut first = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"));
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    let mut ra = BufReader::new(a.try_clone().unwrap());
    let mut rb = BufReader::new(b.try_clone().unwrap());
    // Interleaved on two open connections: each has its own thread.
    let answer_b = ask(&mut b, &mut rb, r#"{"obs": [0.5, 0.5], "goal": [2, 2]}"#);
    let answer_a = ask(&mut a, &mut ra, r#"{"obs": [0, 0], "goal": [1, 1]}"#);
    assert_answer(&answer_a, &expected(&agent, &[0.0, 0.0], &[1.0, 1.0]));
    assert_answer(&answer_b, &expected(&agent, &[0.5, 0.5], &[2.0, 2.0]));
    assert!(
        error_of(&ask(&mut a, &mut ra, r#"{"obs": "x", "goal": [1, 1]}"#))
            .contains("`obs` must be an array")
    );
    // The connection survives the bad line.
    let again = ask(&mut a, &mut ra, r#"{"obs": [0, 0], "goal": [1, 1]}"#);
    assert_answer(&again, &expected(&agent, &[0.0, 0.0], &[1.0, 1.0]));
}

#[test]
fn pixel_checkpoints_take_flat_u8_images() {
    let dir = tempfile::tempdir().unwrap();
    let agent = checkpoint(dir.path(), ModelConfig::pixels(8, 3, 7));
    let image: Vec<u8> = (0..8 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let goal = vec![200u8; 8 * 8 * 3];
    let mut child = server(dir.path(), &[]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "{}",
        serde_json::json!({ "obs": image, "goal": goal })
    )
    .unwrap();
    writeln!(
        stdin,
        "{}",
        serde_json::json!({ "obs": vec![1.5; 192], "goal": goal })
    )
    .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dev = Device::Cpu;
    let o = Tensor::from_slice(&image, (1, 8, 8, 3), &dev).unwrap();
    let g = Tensor::from_slice(&goal, (1, 8, 8, 3), &dev).unwrap();
    assert_answer(&answers[0], &answer_for(&agent, &o, &g));
    assert!(error_of(&answers[1]).contains("0..=255"));
}

#[test]
fn bench_reports_latency_and_bad_checkpoints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path(), ModelConfig::state(2, 2));
    let out = server(dir.path(), &["--bench", "50"])
        .wait_with_output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("50 queries") && text.contains("p50") && text.contains("p99"),
        "{text}"
    );
    println!("{text}");

    let missing = dir.path().join("no-such-checkpoint");
    let out = server(&missing, &[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-checkpoint"), "{err}");
}
