//! Render time per 640x480 frame of the tabletop, and world steps per second (the grasp rules
//! plus forward kinematics, what the world thread does every 4 ms).

use criterion::{Criterion, criterion_group, criterion_main};
use widowx_sim::render::{CameraModel, RenderStyle, Renderer};
use widowx_sim::tabletop::BlockSpec;
use widowx_sim::world::{Scene, World};

fn scene() -> Scene {
    let blocks = BlockSpec::default_set();
    Scene {
        joints_rad: [0.2, -0.3, 0.4, 0.0, 1.3, 0.1, 0.5],
        blocks: vec![
            blocks[0].on_table([0.25, -0.05]),
            blocks[1].on_table([0.33, 0.12]),
            blocks[2].on_table([0.38, -0.06]),
        ],
    }
}

fn render(c: &mut Criterion) {
    let scene = scene();
    let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::plain());
    let mut rgb = vec![0u8; renderer.frame_len()];
    c.bench_function("render 640x480 tabletop frame", |b| {
        b.iter(|| renderer.render(&scene, &mut rgb).expect("buffer size"))
    });
    c.bench_function("build renderer (table drawn once)", |b| {
        b.iter(|| Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::jittered(1)))
    });
}

fn world_step(c: &mut Criterion) {
    let scene = scene();
    let mut world = World::new(scene.blocks.clone(), scene.joints_rad);
    let mut joints = scene.joints_rad;
    let mut t = 0.0f64;
    c.bench_function("world step", |b| {
        b.iter(|| {
            t += 0.004;
            joints[0] = 0.3 * t.sin();
            joints[6] = 0.9 * (2.0 * t).cos();
            world.step(&joints)
        })
    });
}

criterion_group!(benches, render, world_step);
criterion_main!(benches);
