//! The renderer: deterministic bytes, blocks and the gripper where the camera model projects
//! them, still distinguishable after the squash to the policy's 64x64 input.
//!
//! Set WIDOWX_SIM_SNAPSHOT_DIR to also write the frames as PNG for a look.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Rgb, RgbImage};
use widowx::bridge::bridge_target_pose;
use widowx::kinematics::{IkConfig, inverse};
use widowx_sim::render::{CameraModel, RenderStyle, Renderer};
use widowx_sim::tabletop::BlockSpec;
use widowx_sim::world::Scene;

const W: u32 = 640;
const H: u32 = 480;

fn joints_at(xyz_m: [f64; 3], gripper_rad: f64) -> [f64; 7] {
    let target = bridge_target_pose(xyz_m, [0.0; 3]);
    let arm = inverse(
        &target,
        &[0.0, -0.5, 0.5, 0.0, 1.5, 0.0],
        &IkConfig::default(),
    )
    .unwrap();
    let mut joints = [0.0; 7];
    joints[..6].copy_from_slice(&arm);
    joints[6] = gripper_rad;
    joints
}

fn scene(gripper_xyz_m: [f64; 3]) -> Scene {
    let blocks = BlockSpec::default_set();
    Scene {
        joints_rad: joints_at(gripper_xyz_m, 0.9),
        blocks: vec![
            blocks[0].on_table([0.22, -0.08]),
            blocks[1].on_table([0.32, 0.15]),
            blocks[2].on_table([0.40, -0.02]),
        ],
    }
}

fn renderer(style: RenderStyle) -> Renderer {
    Renderer::new(CameraModel::c920_over_shoulder(), style)
}

fn image(rgb: &[u8], width: u32, height: u32) -> RgbImage {
    ImageBuffer::<Rgb<u8>, _>::from_raw(width, height, rgb.to_vec()).unwrap()
}

fn squash64(rgb: &[u8]) -> RgbImage {
    // The same filter as camera::preprocess::squash_rgb.
    imageops::resize(&image(rgb, W, H), 64, 64, FilterType::Triangle)
}

fn snapshot(name: &str, rgb: &[u8]) {
    let Ok(dir) = std::env::var("WIDOWX_SIM_SNAPSHOT_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    image(rgb, W, H)
        .save(format!("{dir}/{name}_640.png"))
        .unwrap();
    let small = squash64(rgb);
    small.save(format!("{dir}/{name}_64.png")).unwrap();
    imageops::resize(&small, 256, 256, FilterType::Nearest)
        .save(format!("{dir}/{name}_64_x4.png"))
        .unwrap();
}

fn pixel(rgb: &[u8], u: f64, v: f64) -> [u8; 3] {
    let (u, v) = (u.floor() as usize, v.floor() as usize);
    let i = (v * W as usize + u) * 3;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

/// The colour's dominant channel (0 red, 1 green, 2 blue) if it clearly dominates.
fn dominant(rgb: [u8; 3]) -> Option<usize> {
    let [r, g, b] = rgb.map(i32::from);
    let max = r.max(g).max(b);
    let second = if max == r {
        g.max(b)
    } else if max == g {
        r.max(b)
    } else {
        r.max(g)
    };
    (max - second > 40).then(|| [r, g, b].iter().position(|&c| c == max).unwrap())
}

#[test]
fn same_scene_and_style_give_identical_bytes() {
    let first = scene([0.3, 0.0, 0.15]);
    let a = renderer(RenderStyle::jittered(5)).render_to_vec(&first);
    let mut reused = renderer(RenderStyle::jittered(5));
    let _ = reused.render_to_vec(&scene([0.2, 0.1, 0.05]));
    let b = reused.render_to_vec(&first);
    assert_eq!(
        a, b,
        "a renderer reused for another scene first gives the same bytes"
    );
    let other_seed = renderer(RenderStyle::jittered(6)).render_to_vec(&first);
    assert_ne!(a, other_seed);
    snapshot("jittered5", &a);
    snapshot("jittered6", &other_seed);
}

#[test]
fn blocks_show_their_colour_where_the_camera_projects_them() {
    let scene = scene([0.3, 0.0, 0.20]);
    let mut renderer = renderer(RenderStyle::plain());
    let rgb = renderer.render_to_vec(&scene);
    snapshot("blocks", &rgb);
    let camera = renderer.camera().clone();
    let small = squash64(&rgb);
    for (channel, block) in scene.blocks.iter().enumerate() {
        let top = [block.position_m[0], block.position_m[1], block.size_m];
        let [u, v] = camera.project(&top).unwrap();
        assert_eq!(
            dominant(pixel(&rgb, u, v)),
            Some(channel),
            "{} at ({u}, {v})",
            block.name
        );
        let [su, sv] = [u * 64.0 / f64::from(W), v * 64.0 / f64::from(H)];
        let squashed = small.get_pixel(su as u32, sv as u32).0;
        assert_eq!(
            dominant(squashed),
            Some(channel),
            "{} in 64x64: {squashed:?}",
            block.name
        );
    }
    // Moved away, the block's old spot shows the table again.
    let mut moved = scene.clone();
    moved.blocks[0].position_m[1] += 0.2;
    let rgb_moved = renderer.render_to_vec(&moved);
    let top = [
        scene.blocks[0].position_m[0],
        scene.blocks[0].position_m[1],
        0.035,
    ];
    let [u, v] = camera.project(&top).unwrap();
    assert_eq!(dominant(pixel(&rgb_moved, u, v)), None);
}

#[test]
fn the_gripper_is_drawn_where_it_is_and_occludes_the_table() {
    let mut renderer = renderer(RenderStyle::plain());
    let camera = renderer.camera().clone();
    for xyz in [[0.2, -0.1, 0.05], [0.38, 0.15, 0.18], [0.3, 0.0, 0.1]] {
        let scene = scene(xyz);
        let rgb = renderer.render_to_vec(&scene);
        // Just above ee_gripper_link, between the fingers, the gripper body is dark grey.
        let [u, v] = camera
            .project(&scene.ee_pose().transform_point(&[-0.06, 0.0, 0.0]))
            .unwrap();
        let [r, g, b] = pixel(&rgb, u, v);
        assert!(
            r < 120 && g < 120 && b < 120,
            "{xyz:?}: ({u}, {v}) = {:?}",
            [r, g, b]
        );
    }
    let low = renderer.render_to_vec(&scene([0.2, -0.1, 0.03]));
    let high = renderer.render_to_vec(&scene([0.36, 0.15, 0.2]));
    snapshot("gripper_low", &low);
    snapshot("gripper_high", &high);
    let (small_low, small_high) = (squash64(&low), squash64(&high));
    let changed = small_low
        .pixels()
        .zip(small_high.pixels())
        .filter(|(a, b)| a.0.iter().zip(b.0).any(|(x, y)| x.abs_diff(y) > 30))
        .count();
    assert!(
        changed > 40,
        "arm motion changes {changed} of the 64x64 pixels"
    );
}
