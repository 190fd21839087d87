//! Actor latency at batch 1 for the pixel configuration (64x64x3, impala-small), for profiling:
//! `cargo run --release -p mqe --example act_latency -- [calls]`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mqe::{Agent, ModelConfig, TrainConfig};

fn main() -> mqe::Result<()> {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dev = Device::Cpu;
    let agent = Agent::new(ModelConfig::pixels(64, 3, 7), TrainConfig::pixels(), &dev)?;
    let image = || Tensor::rand(0f32, 255., (1, 64, 64, 3), &dev)?.to_dtype(DType::U8);
    let (obs, goal) = (image()?, image()?);
    let mut times_ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let action = agent.act(&obs, &goal)?;
        let _ = action.to_vec2::<f32>()?;
        times_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| times_ms[((times_ms.len() - 1) as f64 * p) as usize];
    println!(
        "pixel act, batch 1: p50 {:.3} ms, p99 {:.3} ms",
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
