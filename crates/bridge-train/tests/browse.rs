//! `bridge-train browse` on real raw-layout recordings (JPEG frames, numpy pickles) and on the
//! training cache `prepare` makes of them: the page lists every episode, the tasks, the aborted
//! and the intervened ones; headless Chromium (Debian's `chromium`) renders it from disk and
//! the screenshot shows the grid of cards.

use std::path::{Path, PathBuf};
use std::process::Command;

use bridge_data::raw::{RawEpisodeWriter, RawStep};
use bridge_data::{Outcome, StepKind};
use bridge_train::browse::CARD_BORDER_RGB;

/// A 640x480 frame of one colour with a lighter square that moves with `t`.
fn frame_jpeg(rgb: [u8; 3], t: usize) -> Vec<u8> {
    let mut image = image::RgbImage::from_pixel(640, 480, image::Rgb(rgb));
    let left = 100 + 40 * t as u32;
    for y in 200..280 {
        for x in left..left + 80 {
            image.put_pixel(x, y, image::Rgb([240, 240, 240]));
        }
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&image)
        .unwrap();
    jpeg
}

fn step(rgb: [u8; 3], t: usize) -> RawStep {
    let mut eef = [[0.0; 4]; 4];
    for (i, row) in eef.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    RawStep {
        jpeg: frame_jpeg(rgb, t),
        state: [0.3 + 0.01 * t as f64, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0],
        qpos: [0.0; 6],
        qvel: [0.0; 6],
        joint_effort: [0.0; 6],
        eef_transform: eef,
        time_stamp_s: t as f64 * 0.2,
    }
}

/// Records an episode of `kinds.len()` steps.
fn record(dir: &Path, task: &str, rgb: [u8; 3], kinds: &[StepKind], outcome: Outcome) {
    let mut writer = RawEpisodeWriter::create(dir, Some(task)).unwrap();
    for (t, kind) in kinds.iter().enumerate() {
        writer.push_observation(&step(rgb, t)).unwrap();
        let gripper = if t < 2 { 1.0 } else { 0.0 };
        writer
            .push_action_of([0.01, 0.0, -0.005, 0.0, 0.0, 0.02, gripper], *kind)
            .unwrap();
    }
    writer.push_observation(&step(rgb, kinds.len())).unwrap();
    writer.finish(&outcome).unwrap();
}

fn recordings(root: &Path) -> PathBuf {
    let group = root.join("push_block/00/2026-12-03_10-00-00/raw/traj_group0");
    use StepKind::*;
    record(
        &group.join("traj0"),
        "push the block",
        [150, 90, 40],
        &[Teleop; 4],
        Outcome::Completed,
    );
    record(
        &group.join("traj1"),
        "push the block",
        [60, 120, 60],
        &[Teleop, Jog, Teleop, Teleop],
        Outcome::Completed,
    );
    record(
        &group.join("traj2"),
        "open the drawer",
        [70, 70, 150],
        &[Policy; 3],
        Outcome::aborted("operator quit (q)"),
    );
    root.join("push_block")
}

fn browse(input: &Path, out: &Path) -> String {
    browse_with(input, out, &[])
}

fn browse_with(input: &Path, out: &Path, options: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bridge-train"))
        .arg("browse")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(options)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out.join("index.html")).unwrap()
}

/// Columns where the cards' border colour runs down at least `min_run_px` pixels: the
/// vertical edges of the cards.
fn card_edges(shot: &image::RgbImage, min_run_px: u32) -> Vec<u32> {
    let near = |p: &image::Rgb<u8>| {
        p.0.iter()
            .zip(CARD_BORDER_RGB)
            .all(|(a, b)| a.abs_diff(b) <= 24)
    };
    let mut columns: Vec<u32> = (0..shot.width())
        .filter(|&x| {
            (0..shot.height())
                .filter(|&y| near(shot.get_pixel(x, y)))
                .count() as u32
                >= min_run_px
        })
        .collect();
    // Adjacent columns are one edge (a border is 4 px wide).
    columns.dedup_by(|b, a| *b <= *a + 1);
    let mut edges: Vec<u32> = Vec::new();
    for x in columns {
        if edges.last().is_none_or(|last| x > last + 6) {
            edges.push(x);
        }
    }
    edges
}

#[test]
fn the_report_lists_every_episode_and_chromium_renders_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let input = recordings(dir.path());
    let out = dir.path().join("report");
    let page = browse(&input, &out);
    assert_eq!(page.matches("class=\"card\"").count(), 3, "{page}");
    assert!(
        page.contains("<td>push the block</td><td>2</td><td>8</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>open the drawer</td><td>1</td><td>3</td>"),
        "{page}"
    );
    assert!(
        page.contains("aborted (operator quit (q)): prepare skips it"),
        "{page}"
    );
    assert!(
        page.contains("1 intervened step(s) (jog or pause)"),
        "{page}"
    );
    assert!(
        page.contains("4 steps (jog 1, teleop 3); completed"),
        "{page}"
    );
    for i in 0..3 {
        let gif = image::open(out.join(format!("media/ep{i}.gif"))).unwrap();
        assert_eq!(gif.width(), 160);
        let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
            std::fs::File::open(out.join(format!("media/ep{i}.gif"))).unwrap(),
        ))
        .unwrap();
        let frames = image::AnimationDecoder::into_frames(decoder).count();
        assert!(frames >= 4, "episode {i}: {frames} animation frames");
    }

    // A large dataset is not read to its end: the page says how much was left.
    let first_only = browse_with(&input, &dir.path().join("first"), &["--max-episodes", "1"]);
    assert_eq!(first_only.matches("class=\"card\"").count(), 1);
    assert!(
        first_only.contains("the first 1 shown, 2 more source(s) not read"),
        "{first_only}"
    );

    // The same recordings as a training cache: prepare skips the aborted episode and splits
    // the intervened one around its jog; the report says so.
    let cache = dir.path().join("cache");
    let prepared = Command::new(env!("CARGO_BIN_EXE_bridge-train"))
        .args(["prepare", "--size-px", "64", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        prepared.status.success(),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let cache_page = browse(&cache, &dir.path().join("cache-report"));
    assert!(cache_page.contains("training cache:"), "{cache_page}");
    assert!(cache_page.contains("aborted episode"), "{cache_page}");
    assert!(
        cache_page.contains("1 intervened step(s) left out by prepare"),
        "{cache_page}"
    );
    assert_eq!(
        cache_page.matches("class=\"card\"").count(),
        3,
        "traj0 and the two parts of traj1:\n{cache_page}"
    );

    // Headless Chromium, from disk, no server.
    let shot = dir.path().join("shot.png");
    let profile = dir.path().join("chromium-profile");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let status = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out.join("index.html").display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot start {chromium} ({e}): the browser test needs Debian's chromium (apt-get install chromium), or CHROMIUM=path")
        });
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let shot = image::open(&shot).unwrap().into_rgb8();
    // Three cards side by side: six vertical edges, each at least a thumbnail high.
    let edges = card_edges(&shot, 150);
    assert_eq!(edges.len(), 6, "card edges at x = {edges:?}");
    // The first card shows its thumbnail: the episode's orange, not a blank box.
    let inside = (edges[0] + 10..edges[1] - 10)
        .flat_map(|x| (0..shot.height()).map(move |y| (x, y)))
        .filter(|&(x, y)| {
            let p = shot.get_pixel(x, y).0;
            p[0].abs_diff(150) < 30 && p[1].abs_diff(90) < 30 && p[2].abs_diff(40) < 30
        })
        .count();
    assert!(
        inside > 2000,
        "the first thumbnail is not on the screenshot ({inside} px)"
    );
}
