//! Trains MQE or GCBC on the U-maze segments and prints the far-task success rate: the tuning
//! tool behind `tests/learning.rs`.
//!
//! `cargo run -p bridge-train --example maze_learning -- algo=mqe steps=3000 width=128 ...`
//! (any `key=value` below; unknown keys are an error). `px=16` observes the maze as 16x16
//! top-down images through the IMPALA encoders instead of as positions (`px=0`).
//!
//! Pixel record (2026-11-25, 2-core CPU, one thread, shared with other training): `px=16
//! batch=128 gamma=0.95 lr=1e-3 alpha=0.3`, impala-small, no crop, seed 0.
//! - MQE, 6000 steps (1222 s): far tasks 1.000 (both directions), one-cell moves 1.000.
//!   The critic learns in steps: `loss_backup` 0.83 and pair accuracy at chance (1/128) up to
//!   step 2000; 0.58 and 0.05 from 2500 to 5500; 0.29 and 0.07 at 6000. The same run with
//!   states leaves the 0.83 plateau before step 500 and solves the far tasks by step 2500;
//!   at 2500 steps the pixel run had not yet solved them (far 0.000, near 0.650).
//! - GCBC, the same settings and 6000 steps (252 s): far tasks 0.000, one-cell moves 0.867.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use bridge_train::config::{Override, RunConfig, resolve};
use bridge_train::fit::{FitOptions, fit};
use bridge_train::maze::{Maze, success_rate};
use candle_core::Device;

fn main() -> Result<()> {
    let mut p = std::collections::BTreeMap::from(
        [
            ("algo", "mqe"),
            ("steps", "3000"),
            ("width", "128"),
            ("depth", "2"),
            ("latent", "64"),
            ("comps", "4"),
            ("batch", "256"),
            ("gamma", "0.97"),
            ("lambda", "0.95"),
            ("alpha", "0.1"),
            ("lr", "3e-4"),
            ("segments", "1000"),
            ("seg_steps", "10"),
            ("noise", "0.3"),
            ("share", "0.5"),
            ("seed", "0"),
            ("rollouts", "20"),
            ("max_steps", "100"),
            ("ensemble", "2"),
            ("px", "0"),
            ("crop", "0.0"),
            ("enc_dim", "64"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    for arg in std::env::args().skip(1) {
        let (k, v) = arg.split_once('=').context("arguments are key=value")?;
        if !p.contains_key(k) {
            bail!("unknown key {k}");
        }
        p.insert(k.into(), v.into());
    }
    let get = |k: &str| p[k].clone();
    let maze = Maze::new();
    let seg_seed: u64 = get("seed").parse()?;
    let segments = maze.segments(
        get("segments").parse()?,
        get("seg_steps").parse()?,
        get("noise").parse()?,
        100 + seg_seed,
    );
    let data = match get("px").parse::<usize>()? {
        0 => segments.to_dataset()?,
        side_px => segments.to_pixel_dataset(&maze, side_px)?,
    };
    let width = get("width");
    let hidden = format!(
        "[{}]",
        vec![width.as_str(); get("depth").parse()?].join(",")
    );
    let sets = [
        format!("algo={}", get("algo")),
        format!("steps={}", get("steps")),
        format!("mlp_hidden={hidden}"),
        format!("actor_hidden={hidden}"),
        format!("latent_dim={}", get("latent")),
        format!("mrn_components={}", get("comps")),
        format!("ensemble={}", get("ensemble")),
        format!("batch_size={}", get("batch")),
        format!("gamma={}", get("gamma")),
        format!("waypoint_lambda={}", get("lambda")),
        format!("bc_alpha={}", get("alpha")),
        format!("lr={}", get("lr")),
        format!("actor_random_goal_share={}", get("share")),
        format!("seed={}", get("seed")),
        format!("crop_prob={}", get("crop")),
        format!("encoder_dim={}", get("enc_dim")),
        "log_interval_steps=500".to_string(),
    ];
    let overrides = sets
        .iter()
        .map(|s| s.parse::<Override>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = resolve(RunConfig::default(), None, &overrides)?;
    let dir = tempfile::tempdir()?;
    let options = FitOptions {
        out_dir: dir.path().into(),
        resume: None,
        dataset_name: "u-maze".into(),
        progress: false,
        action_norm: None,
        loader_threads: 1,
        input_crop_px: None,
        data_source: mqe::DataSource::Unknown,
        env_eval: None,
    };
    let start = Instant::now();
    let outcome = fit(&data, None, &config, &options, &Device::Cpu)?;
    let train_s = start.elapsed().as_secs_f64();
    for r in &outcome.records {
        println!("  step {:>6} {}", r.step, r.summary());
    }
    let start = Instant::now();
    let tasks = Maze::far_tasks();
    let rate = success_rate(
        &maze,
        &outcome.agent,
        &tasks,
        get("rollouts").parse()?,
        0.2,
        get("max_steps").parse()?,
        7,
    )?;
    let there = success_rate(
        &maze,
        &outcome.agent,
        &tasks[..1],
        get("rollouts").parse()?,
        0.2,
        get("max_steps").parse()?,
        7,
    )?;
    let near = success_rate(
        &maze,
        &outcome.agent,
        &maze.near_tasks(),
        5,
        0.2,
        get("max_steps").parse()?,
        7,
    )?;
    println!(
        "RESULT {:?} success {rate:.3} (left->right {there:.3}) near {near:.3} train {train_s:.1}s eval {:.1}s",
        p,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
