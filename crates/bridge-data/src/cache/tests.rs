//! Tests of the cache: writing, committing, resuming, reading back and splitting.

use std::path::Path;

use super::*;
use crate::dataset::Obs;

fn settings(size_px: u32) -> CacheSettings {
    CacheSettings::whole_frame(size_px)
}

/// A trajectory of `rows` frames of 4x4, every byte of frame t equal to `seed + t`.
fn trajectory(name: &str, rows: usize, seed: u8) -> PreparedTrajectory {
    PreparedTrajectory {
        provenance: format!("/data/{name}"),
        split_name: name.into(),
        language: Some(format!("task {name}")),
        frames: (0..rows)
            .flat_map(|t| vec![seed.wrapping_add(t as u8); 4 * 4 * 3])
            .collect(),
        states: (0..rows).map(|t| [t as f32; 7]).collect(),
        actions: (0..rows - 1)
            .map(|t| {
                let mut a = [0.01 * t as f32 + f32::from(seed); 7];
                a[GRIPPER_DIM] = (t % 2) as f32;
                a
            })
            .collect(),
    }
}

fn source(name: &str, trajectories: Vec<PreparedTrajectory>) -> PreparedSource {
    PreparedSource {
        path: format!("/data/{name}"),
        hash: format!("fnv1a64:{name}"),
        failed: None,
        trajectories,
        skipped: Vec::new(),
        simulated: false,
        intervened_steps_left_out: 0,
    }
}

#[test]
fn committed_sources_read_back_with_pad_actions_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
    writer
        .append(source(
            "a",
            vec![trajectory("a", 3, 10), trajectory("a2", 2, 50)],
        ))
        .unwrap();
    writer
        .append(source("b", vec![trajectory("b", 4, 90)]))
        .unwrap();
    let manifest = writer.commit().unwrap().clone();
    assert_eq!(manifest.counts.rows, 9);
    assert_eq!(manifest.counts.episodes, 3);
    assert_eq!(manifest.counts.transitions, 6);
    assert_eq!(manifest.counts.sources, 2);
    drop(writer);

    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.manifest(), &manifest);
    assert_eq!(cache.frames().len(), 9 * 48);
    assert_eq!(
        cache.frames()[3 * 48],
        50,
        "second trajectory's first frame"
    );
    let actions = cache.actions();
    assert_eq!(&actions[2 * 7..3 * 7], &[0.0; 7], "pad row of trajectory a");
    assert_eq!(actions[3 * 7], 50.0);
    assert_eq!(cache.states()[8 * 7], 3.0);
    let trajs = cache.trajectories();
    assert_eq!(trajs[1].provenance, "/data/a2");
    assert_eq!((trajs[2].first_row, trajs[2].rows), (5, 4));
    assert_eq!(trajs[2].split_key, split_key("b"));
    assert_eq!(trajs[0].language.as_deref(), Some("task a"));
    let data = cache.dataset().unwrap();
    assert_eq!(data.episode_ends(), &[2, 4, 8]);
    assert_eq!(data.summary().obs_shape, vec![4, 4, 3]);
}

#[test]
fn uncommitted_appends_are_cut_off_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
    writer
        .append(source("a", vec![trajectory("a", 3, 1)]))
        .unwrap();
    writer.commit().unwrap();
    // Appended and flushed but never committed: a kill in the middle of a chunk.
    writer
        .append(source("b", vec![trajectory("b", 5, 2)]))
        .unwrap();
    writer.files.sync(dir.path()).unwrap();
    drop(writer);
    assert!(
        std::fs::metadata(dir.path().join(FRAMES_FILE))
            .unwrap()
            .len()
            > 3 * 48
    );

    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(
        cache.manifest().counts.rows,
        3,
        "readers see the last commit"
    );
    drop(cache);
    let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
    assert_eq!(writer.status("/data/b"), SourceStatus::New);
    assert!(matches!(
        writer.status("/data/a"),
        SourceStatus::Recorded { failed: false, .. }
    ));
    writer
        .append(source("c", vec![trajectory("c", 2, 3)]))
        .unwrap();
    writer.commit().unwrap();
    drop(writer);
    assert_eq!(
        std::fs::metadata(dir.path().join(FRAMES_FILE))
            .unwrap()
            .len(),
        5 * 48,
        "the interrupted rows are gone"
    );
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.frames()[3 * 48], 3);
    assert_eq!(cache.sources().len(), 2);
}

#[test]
fn settings_must_match_and_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
    let err = CacheWriter::open(dir.path(), settings(4)).err().unwrap();
    assert!(matches!(err, CacheError::Locked { .. }), "{err}");
    drop(writer);
    let err = CacheWriter::open(dir.path(), settings(8)).err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("size_px") && text.contains('4') && text.contains('8'),
        "{text}"
    );
    let other = CacheSettings {
        binarise_gripper: true,
        ..settings(4)
    };
    let err = CacheWriter::open(dir.path(), other).err().unwrap();
    assert!(err.to_string().contains("binarise_gripper"), "{err}");
}

#[test]
fn failures_and_skips_are_counted_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
    let mut bad = source("bad", Vec::new());
    bad.failed = Some("obs_dict.pkl: truncated".into());
    writer.append(bad).unwrap();
    let mut partial = source("partial", vec![trajectory("p", 2, 0)]);
    partial.skipped.push(SkipRecord {
        path: "/data/partial#1/images0/im_3.jpg".into(),
        reason: "could not decode image".into(),
    });
    writer.append(partial).unwrap();
    let manifest = writer.commit().unwrap().clone();
    assert_eq!(manifest.counts.failed_sources, 1);
    assert_eq!(manifest.counts.skipped_trajectories, 1);
    assert_eq!(manifest.skipped.len(), 2);
    assert!(manifest.skipped[1].path.ends_with("im_3.jpg"));
    assert_eq!(
        writer.status("/data/bad"),
        SourceStatus::Recorded {
            hash: "fnv1a64:bad".into(),
            failed: true
        }
    );
    // A failed source read again successfully replaces its failure.
    writer
        .append(source("bad", vec![trajectory("bad", 2, 0)]))
        .unwrap();
    let manifest = writer.commit().unwrap();
    assert_eq!(manifest.counts.failed_sources, 0);
    assert_eq!(manifest.counts.sources, 2);
    assert_eq!(manifest.counts.episodes, 2);
}

#[test]
fn malformed_trajectories_are_refused_with_their_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
    let mut t = trajectory("x", 3, 0);
    t.actions.pop();
    let err = writer.append(source("x", vec![t])).unwrap_err();
    assert!(
        err.to_string().contains("/data/x") && err.to_string().contains("1 actions"),
        "{err}"
    );
    let mut t = trajectory("y", 3, 0);
    t.states[1][2] = f32::NAN;
    let err = writer.append(source("y", vec![t])).unwrap_err();
    assert!(err.to_string().contains("state 1"), "{err}");
}

#[test]
fn action_bounds_skip_pad_rows_and_fix_the_gripper() {
    // Two episodes; dimension 0 takes 0..=100 over the transitions, pads hold 1000.
    let mut actions = Vec::new();
    let mut episodes = Vec::new();
    let mut value = 0.0f32;
    for len in [51u64, 52] {
        episodes.push(((actions.len() / 7) as u64, len));
        for t in 0..len {
            let mut a = [5.0f32; 7];
            a[0] = if t + 1 == len { 1000.0 } else { value };
            a[GRIPPER_DIM] = 0.3;
            if t + 1 < len {
                value += 1.0;
            }
            actions.extend_from_slice(&a);
        }
    }
    let bounds = action_bounds(&actions, &episodes).unwrap();
    assert_eq!(bounds.transitions, 101);
    assert!((bounds.low[0] - 1.0).abs() < 1e-4 && (bounds.high[0] - 99.0).abs() < 1e-4);
    assert_eq!(
        (bounds.low[1], bounds.high[1]),
        (4.0, 6.0),
        "constant dimension"
    );
    assert_eq!((bounds.low[6], bounds.high[6]), (0.0, 1.0), "gripper");
    assert!(action_bounds(&actions, &[]).is_none());
}

#[test]
fn split_is_deterministic_and_close_to_the_fraction() {
    let keys: Vec<u64> = (0..4000)
        .map(|i| split_key(&format!("raw/traj{i}")))
        .collect();
    let held = keys.iter().filter(|&&k| is_validation(k, 0.1)).count();
    assert!((300..500).contains(&held), "{held} of 4000 at 10%");
    assert!(keys.iter().all(|&k| !is_validation(k, 0.0)));
    assert!(keys.iter().all(|&k| is_validation(k, 1.0)));
    // Growing the fraction only adds trajectories.
    assert!(
        keys.iter()
            .all(|&k| !is_validation(k, 0.1) || is_validation(k, 0.2))
    );
    assert_eq!(split_key("raw/traj7"), keys[7]);
}

/// A cache of 40 three-row trajectories; trajectory i's actions are about i, so every
/// trajectory moves the action percentiles.
fn forty_trajectories(dir: &Path) -> Cache {
    let mut writer = CacheWriter::open(dir, settings(4)).unwrap();
    let trajs: Vec<_> = (0..40)
        .map(|i| trajectory(&format!("t{i}"), 3, i))
        .collect();
    writer.append(source("all", trajs)).unwrap();
    writer.commit().unwrap();
    drop(writer);
    Cache::open(dir).unwrap()
}

#[test]
fn split_shares_frames_and_keeps_episodes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cache = forty_trajectories(dir.path());
    let split = cache.split(0.3).unwrap();
    let val = split.val.unwrap();
    assert_eq!(split.train.num_episodes() + val.num_episodes(), 40);
    assert!(val.num_episodes() > 3 && split.train.num_episodes() > 15);
    for (e, t) in cache.trajectories().iter().enumerate() {
        let start = t.first_row as u32;
        let in_val = val.episode_starts().contains(&start);
        assert_eq!(in_val, is_validation(t.split_key, 0.3), "episode {e}");
        assert_eq!(split.train.episode_starts().contains(&start), !in_val);
    }
    let (Obs::Pixels { data: a, .. }, Obs::Pixels { data: b, .. }) = (split.train.obs(), val.obs())
    else {
        panic!("pixel datasets expected")
    };
    assert_eq!(a.as_ptr(), b.as_ptr(), "one mapping, no copy");
    assert_eq!(a.as_ptr(), cache.frames().as_ptr());
    assert!(cache.split(1.0).is_err());
    let whole = cache.split(0.0).unwrap();
    assert!(whole.val.is_none());
    assert_eq!(Some(&whole.train_action_bounds), cache.action_bounds());
}

#[test]
fn the_training_action_map_ignores_held_out_trajectories() {
    let dir = tempfile::tempdir().unwrap();
    let cache = forty_trajectories(dir.path());
    let split = cache.split(0.3).unwrap();
    let train_episodes: Vec<(u64, u64)> = cache
        .trajectories()
        .iter()
        .filter(|t| !is_validation(t.split_key, 0.3))
        .map(|t| (t.first_row, t.rows))
        .collect();
    let expected = action_bounds(cache.actions(), &train_episodes).unwrap();
    assert_eq!(split.train_action_bounds, expected);
    assert_eq!(
        split.train_action_bounds.transitions,
        2 * split.train.num_episodes() as u64
    );
    assert_ne!(Some(&split.train_action_bounds), cache.action_bounds());
}

#[test]
fn fingerprint_follows_content_changes() {
    let dir = tempfile::tempdir().unwrap();
    let traj = dir.path().join("traj0");
    std::fs::create_dir_all(traj.join("images0")).unwrap();
    std::fs::write(traj.join("images0/im_0.jpg"), b"abc").unwrap();
    std::fs::write(traj.join("obs_dict.pkl"), b"xyz").unwrap();
    let before = source_fingerprint(&traj).unwrap();
    assert_eq!(before, source_fingerprint(&traj).unwrap());
    assert!(before.starts_with("fnv1a64:"));
    std::fs::write(traj.join("images0/im_0.jpg"), b"abcd").unwrap();
    assert_ne!(before, source_fingerprint(&traj).unwrap());
    let err = source_fingerprint(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_directory_of_other_files_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let err = CacheWriter::open(dir.path(), settings(4)).err().unwrap();
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert!(!dir.path().join(MANIFEST_FILE).exists());
    // A cache that crashed before its first commit (only its own files) is reused.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join(LOCK_FILE), b"").unwrap();
    std::fs::write(fresh.path().join(FRAMES_FILE), [1u8; 10]).unwrap();
    let writer = CacheWriter::open(fresh.path(), settings(4)).unwrap();
    assert_eq!(writer.rows(), 0);
    assert_eq!(
        std::fs::metadata(fresh.path().join(FRAMES_FILE))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn newer_format_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(CacheWriter::open(dir.path(), settings(4)).unwrap());
    let path = dir.path().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("format_version = 1", "format_version = 9"),
    )
    .unwrap();
    let err = Cache::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, CacheError::FormatVersion { found: 9, .. }),
        "{err}"
    );
    assert!(Cache::is_cache(dir.path()));
    assert!(!Cache::is_cache(&dir.path().join("nope")));
}
