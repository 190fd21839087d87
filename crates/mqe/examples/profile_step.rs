//! Times the phases of a train step (forward, backward, update) at the bench configurations.
//!
//! `cargo run --release -p mqe --example profile_step -- state|pixels [steps]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mqe::{Agent, Batch, ModelConfig, TrainConfig};

fn obs(kind: &str, b: usize, dev: &Device) -> candle_core::Result<Tensor> {
    if kind == "state" {
        Tensor::randn(0f32, 1.0, (b, 2), dev)
    } else {
        Tensor::rand(0f32, 255.0, (b, 64, 64, 3), dev)?.to_dtype(DType::U8)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("state", String::as_str);
    let steps: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let dev = Device::Cpu;
    let (model, b) = if kind == "state" {
        (ModelConfig::state(2, 2), 256)
    } else {
        (ModelConfig::pixels(64, 3, 7), 64)
    };
    let action_dim = model.action_dim;
    let mut agent = Agent::new(model, TrainConfig::default(), &dev)?;
    let batch = Batch {
        obs: obs(kind, b, &dev)?,
        next_obs: obs(kind, b, &dev)?,
        goal: obs(kind, b, &dev)?,
        waypoint: obs(kind, b, &dev)?,
        waypoint_offset: Tensor::ones(b, DType::F32, &dev)?,
        actor_goal: obs(kind, b, &dev)?,
        action: Tensor::rand(-1f32, 1.0, (b, action_dim), &dev)?,
    };
    for _ in 0..steps {
        let t0 = Instant::now();
        let (critic, actor) = agent.loss_tensors(&batch)?;
        let total = match critic {
            Some(c) => (c + actor)?,
            None => actor,
        };
        let t1 = Instant::now();
        let grads = total.backward()?;
        let t2 = Instant::now();
        agent.optimizer_mut().step(&grads)?;
        let t3 = Instant::now();
        let full = Instant::now();
        agent.train_step(&batch)?;
        println!(
            "forward {:.1} ms, backward {:.1} ms, adam {:.1} ms | train_step {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            full.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
