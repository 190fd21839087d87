//! Properties of the MQE sampler (docs/mqe.md section 2), checked over many seeded draws.

use bridge_data::{
    BatchBuffers, Dataset, IndexBatch, Obs, Sampler, SamplerConfig, SamplerError, sample_geometric,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// State data whose single observation value is the row index, actions `-row`.
fn row_coded_states(episode_lengths: &[usize]) -> Dataset {
    let rows: usize = episode_lengths.iter().sum();
    let obs = Obs::State {
        data: (0..rows).map(|r| r as f32).collect(),
        dim: 1,
    };
    let actions = (0..rows).map(|r| -(r as f32)).collect();
    Dataset::from_episode_lengths(obs, actions, 1, episode_lengths).unwrap()
}

fn config(batch_size: usize) -> SamplerConfig {
    SamplerConfig {
        batch_size,
        ..SamplerConfig::default()
    }
}

fn draw(dataset: &Dataset, config: SamplerConfig, seed: u64, batches: usize) -> IndexBatch {
    let mut sampler = Sampler::new(config, seed).unwrap();
    let mut all = IndexBatch::default();
    let mut batch = IndexBatch::default();
    for _ in 0..batches {
        sampler.sample_indices(dataset, &mut batch).unwrap();
        all.t.extend(&batch.t);
        all.next.extend(&batch.next);
        all.goal.extend(&batch.goal);
        all.goal_offset.extend(&batch.goal_offset);
        all.waypoint.extend(&batch.waypoint);
        all.waypoint_offset.extend(&batch.waypoint_offset);
        all.actor_goal.extend(&batch.actor_goal);
    }
    all
}

#[test]
fn untruncated_geometric_mean_matches_one_over_one_minus_gamma() {
    let mut rng = StdRng::seed_from_u64(7);
    let draws = 400_000;
    for gamma in [0.5, 0.95, 0.98, 0.995] {
        let samples: Vec<u64> = (0..draws)
            .map(|_| sample_geometric(&mut rng, gamma))
            .collect();
        let mean = samples.iter().sum::<u64>() as f64 / draws as f64;
        let expected = 1.0 / (1.0 - gamma);
        // Standard error of the mean: sqrt(gamma) / (1 - gamma) / sqrt(draws); allow 5 of them.
        let tolerance = 5.0 * gamma.sqrt() / (1.0 - gamma) / (draws as f64).sqrt();
        assert!(
            (mean - expected).abs() < tolerance,
            "gamma {gamma}: mean {mean}, expected {expected} +- {tolerance}"
        );
        assert!(samples.iter().all(|&k| k >= 1));
        // The law itself: P(K = 1) = 1 - gamma and P(K > 3) = gamma^3.
        let share = |pred: &dyn Fn(u64) -> bool| {
            samples.iter().filter(|&&k| pred(k)).count() as f64 / draws as f64
        };
        assert!(
            (share(&|k| k == 1) - (1.0 - gamma)).abs() < 0.005,
            "gamma {gamma}"
        );
        assert!(
            (share(&|k| k > 3) - gamma.powi(3)).abs() < 0.005,
            "gamma {gamma}"
        );
    }
}

#[test]
fn goal_offsets_in_one_long_episode_have_the_geometric_mean() {
    // Truncation at the end is negligible: t lies within ~100 rows of the end with prob 1e-3.
    let ds = row_coded_states(&[100_000]);
    let cfg = SamplerConfig {
        gamma: 0.9,
        ..config(1000)
    };
    let batch = draw(&ds, cfg, 3, 100);
    let mean = batch.goal_offset.iter().map(|&k| k as f64).sum::<f64>() / batch.len() as f64;
    assert!((mean - 10.0).abs() < 0.15, "mean K {mean}");
}

fn check_invariants(ds: &Dataset, batch: &IndexBatch, random_goal_share: f64) {
    let ends = ds.row_episode_ends();
    for i in 0..batch.len() {
        let t = batch.t[i];
        let end = ends[t as usize];
        assert!(t < end, "t {t} is the last row of its episode");
        assert_eq!(batch.next[i], t + 1);
        let (k_goal, k_way) = (batch.goal_offset[i], batch.waypoint_offset[i]);
        assert_eq!(batch.goal[i], t + k_goal);
        assert_eq!(batch.waypoint[i], t + k_way);
        assert!(
            k_goal >= 1 && t + k_goal <= end,
            "goal beyond the episode end"
        );
        assert!(
            k_way >= 1 && k_way <= k_goal,
            "waypoint {k_way} beyond goal {k_goal}"
        );
        assert_eq!(ends[batch.goal[i] as usize], end, "goal in another episode");
        assert_eq!(
            ends[batch.waypoint[i] as usize], end,
            "waypoint in another episode"
        );
        let actor_goal = batch.actor_goal[i];
        assert!((actor_goal as usize) < ds.len());
        if random_goal_share == 0.0 {
            assert!(
                actor_goal > t && actor_goal <= end,
                "actor goal {actor_goal} outside [{}, {end}]",
                t + 1
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn indices_stay_inside_their_episode(
        lengths in prop::collection::vec(1usize..40, 1..30),
        gamma in 0.0f64..0.999,
        lambda in 0.0f64..0.999,
        one_step_prob in 0.0f64..=1.0,
        seed in any::<u64>(),
    ) {
        // At least one episode must have a transition.
        let mut lengths = lengths;
        lengths.push(2);
        let ds = row_coded_states(&lengths);
        let cfg = SamplerConfig { gamma, lambda, one_step_prob, ..config(64) };
        let batch = draw(&ds, cfg, seed, 4);
        check_invariants(&ds, &batch, 0.0);
    }
}

#[test]
fn every_transition_row_is_drawn_about_equally_often() {
    let lengths = [1, 2, 5, 1, 9, 3];
    let ds = row_coded_states(&lengths);
    let batch = draw(&ds, config(1000), 11, 140);
    let mut counts = vec![0usize; ds.len()];
    for &t in &batch.t {
        counts[t as usize] += 1;
    }
    let transitions = ds.transition_rows();
    assert_eq!(transitions.len(), 15);
    let expected = batch.len() as f64 / transitions.len() as f64;
    for (row, &count) in counts.iter().enumerate() {
        if transitions.contains(&(row as u32)) {
            let rel = count as f64 / expected;
            assert!((0.95..1.05).contains(&rel), "row {row}: {rel}");
        } else {
            assert_eq!(count, 0, "terminal row {row} drawn");
        }
    }
}

#[test]
fn one_step_share_is_close_to_p() {
    // Long episodes and long horizons make a natural k = 1 rare; measure that rate with p = 0
    // and check p + (1 - p) * rate with p = 0.2.
    let ds = row_coded_states(&[20_000; 5]);
    let base = SamplerConfig {
        gamma: 0.999,
        lambda: 0.999,
        ..config(1000)
    };
    let ones = |p: f64| {
        let batch = draw(
            &ds,
            SamplerConfig {
                one_step_prob: p,
                ..base.clone()
            },
            5,
            200,
        );
        let ones = batch.waypoint_offset.iter().filter(|&&k| k == 1).count();
        let next_ok = (0..batch.len())
            .filter(|&i| batch.waypoint_offset[i] == 1)
            .all(|i| batch.waypoint[i] == batch.next[i]);
        assert!(next_ok);
        ones as f64 / batch.len() as f64
    };
    let natural = ones(0.0);
    assert!(natural < 0.01, "natural one-step rate {natural}");
    let share = ones(0.2);
    let expected = 0.2 + 0.8 * natural;
    assert!(
        (share - expected).abs() < 0.005,
        "share {share}, expected {expected}"
    );
}

#[test]
fn random_goal_share_mixes_in_goals_from_anywhere() {
    let ds = row_coded_states(&[50; 200]);
    let cfg = SamplerConfig {
        random_goal_share: 0.5,
        ..config(1000)
    };
    let batch = draw(&ds, cfg, 9, 50);
    let ends = ds.row_episode_ends();
    let outside = (0..batch.len())
        .filter(|&i| {
            let (t, g) = (batch.t[i], batch.actor_goal[i]);
            g <= t || g > ends[t as usize]
        })
        .count() as f64
        / batch.len() as f64;
    // A uniform row falls outside the future of t with probability about 1 - 25/10000.
    assert!(
        (outside - 0.5 * 0.9975).abs() < 0.01,
        "outside share {outside}"
    );
    let other_episodes = (0..batch.len())
        .filter(|&i| ends[batch.actor_goal[i] as usize] != ends[batch.t[i] as usize])
        .count();
    assert!(other_episodes > batch.len() / 3);
}

#[test]
fn same_seed_same_batches_and_different_seed_different_batches() {
    let ds = row_coded_states(&[30, 7, 12, 100]);
    let run = |seed| {
        let mut sampler = Sampler::new(SamplerConfig::ogbench_stitch(), seed).unwrap();
        let mut buffers = sampler.buffers(&ds);
        let mut history = Vec::new();
        for _ in 0..5 {
            sampler.sample(&ds, &mut buffers).unwrap();
            history.push(buffers.clone());
        }
        history
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn state_gather_copies_the_sampled_rows() {
    let ds = row_coded_states(&[10, 3, 25]);
    let mut sampler = Sampler::new(SamplerConfig::ogbench_stitch(), 1).unwrap();
    let mut buffers = sampler.buffers(&ds);
    for _ in 0..3 {
        sampler.sample(&ds, &mut buffers).unwrap();
        let idx = buffers.indices().clone();
        let states = buffers.state().unwrap();
        let as_rows = |v: &[f32]| v.iter().map(|&x| x as u32).collect::<Vec<_>>();
        assert_eq!(as_rows(&states.obs), idx.t);
        assert_eq!(as_rows(&states.next), idx.next);
        assert_eq!(as_rows(&states.goal), idx.goal);
        assert_eq!(as_rows(&states.waypoint), idx.waypoint);
        assert_eq!(as_rows(&states.actor_goal), idx.actor_goal);
        let actions: Vec<u32> = buffers.actions().iter().map(|&a| (-a) as u32).collect();
        assert_eq!(actions, idx.t);
        assert!(buffers.pixels().is_none() && buffers.crop_offsets().is_none());
    }
}

#[test]
fn explicit_gather_uses_the_given_indices() {
    let ds = row_coded_states(&[10, 3, 25]);
    let mut sampler = Sampler::new(config(2), 1).unwrap();
    let mut buffers = sampler.buffers(&ds);
    let indices = IndexBatch {
        t: vec![0, 11],
        next: vec![1, 12],
        goal: vec![9, 12],
        goal_offset: vec![9, 1],
        waypoint: vec![2, 12],
        waypoint_offset: vec![2, 1],
        actor_goal: vec![5, 30],
    };
    sampler.gather(&ds, &indices, &mut buffers).unwrap();
    assert_eq!(buffers.indices(), &indices);
    assert_eq!(buffers.state().unwrap().actor_goal, vec![5.0, 30.0]);
    assert_eq!(buffers.actions(), &[-0.0, -11.0]);

    let mut out_of_range = indices.clone();
    out_of_range.goal[1] = 38;
    let err = sampler
        .gather(&ds, &out_of_range, &mut buffers)
        .unwrap_err();
    assert!(err.to_string().contains("row 38"), "{err}");
}

#[test]
fn mismatched_buffers_and_datasets_without_transitions_are_errors() {
    let ds = row_coded_states(&[10]);
    let other = Dataset::from_episode_lengths(
        Obs::State {
            data: vec![0.0; 20],
            dim: 2,
        },
        vec![0.0; 10],
        1,
        &[10],
    )
    .unwrap();
    let mut sampler = Sampler::new(config(8), 0).unwrap();
    let mut buffers = sampler.buffers(&other);
    let err = sampler.sample(&ds, &mut buffers).unwrap_err();
    assert!(matches!(err, SamplerError::BufferMismatch { .. }), "{err}");
    let mut wrong_batch = BatchBuffers::new(&ds, 4);
    assert!(sampler.sample(&ds, &mut wrong_batch).is_err());

    let singletons = row_coded_states(&[1, 1, 1]);
    let mut buffers = sampler.buffers(&singletons);
    let err = sampler.sample(&singletons, &mut buffers).unwrap_err();
    assert_eq!(err, SamplerError::NoTransitions);
}

#[test]
fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
    let cfg: SamplerConfig = toml::from_str("gamma = 0.98\none_step_prob = 0.1").unwrap();
    assert_eq!(cfg, SamplerConfig::bridge_pixels());
    let cfg: SamplerConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, SamplerConfig::default());
    assert_eq!(
        (cfg.batch_size, cfg.gamma, cfg.lambda, cfg.one_step_prob),
        (256, 0.995, 0.95, 0.2)
    );
    let err = toml::from_str::<SamplerConfig>("gama = 0.9").unwrap_err();
    assert!(err.to_string().contains("gama"), "{err}");
}

// ---- pixels -------------------------------------------------------------------------------

const H: usize = 8;
const W: usize = 6;
const PAD: usize = 3;

/// Frames whose pixel (y, x) holds [row, y, x]: every value says where it came from.
fn coded_frames(episode_lengths: &[usize]) -> Dataset {
    let rows: usize = episode_lengths.iter().sum();
    let mut data = Vec::with_capacity(rows * H * W * 3);
    for row in 0..rows {
        for y in 0..H {
            for x in 0..W {
                data.extend_from_slice(&[row as u8, y as u8, x as u8]);
            }
        }
    }
    let obs = Obs::Pixels {
        data: data.into(),
        height: H,
        width: W,
        channels: 3,
    };
    Dataset::from_episode_lengths(obs, vec![0.0; rows * 2], 2, episode_lengths).unwrap()
}

/// Expected pixel of frame `row` after padding by PAD (edge replication) and cropping at `offset`.
fn expected_pixel(row: u32, [dy, dx]: [u32; 2], y: usize, x: usize) -> [u8; 3] {
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as u8;
    let sy = clamp(y as isize + dy as isize - PAD as isize, H);
    let sx = clamp(x as isize + dx as isize - PAD as isize, W);
    [row as u8, sy, sx]
}

fn check_frames(buffers: &BatchBuffers, offsets: &[[u32; 2]]) {
    let idx = buffers.indices();
    let px = buffers.pixels().unwrap();
    let roles = [
        (&px.obs, &idx.t),
        (&px.next, &idx.next),
        (&px.goal, &idx.goal),
        (&px.waypoint, &idx.waypoint),
        (&px.actor_goal, &idx.actor_goal),
    ];
    let frame = H * W * 3;
    for (buffer, rows) in roles {
        assert_eq!(buffer.len(), buffers.batch_size() * frame);
        for (i, image) in buffer.chunks_exact(frame).enumerate() {
            for y in 0..H {
                for x in 0..W {
                    let got = &image[(y * W + x) * 3..][..3];
                    assert_eq!(
                        got,
                        expected_pixel(rows[i], offsets[i], y, x),
                        "elem {i} ({y},{x})"
                    );
                }
            }
        }
    }
}

#[test]
fn crop_keeps_shapes_and_shares_one_offset_per_element() {
    let ds = coded_frames(&[20, 15, 30]);
    let cfg = SamplerConfig {
        crop_prob: 1.0,
        ..SamplerConfig::bridge_pixels()
    };
    let mut sampler = Sampler::new(
        SamplerConfig {
            batch_size: 64,
            ..cfg
        },
        4,
    )
    .unwrap();
    let mut buffers = sampler.buffers(&ds);
    assert_eq!(buffers.obs_shape(), &[H, W, 3]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        sampler.sample(&ds, &mut buffers).unwrap();
        let offsets = buffers.crop_offsets().unwrap().to_vec();
        assert!(
            offsets
                .iter()
                .all(|o| o[0] <= 2 * PAD as u32 && o[1] <= 2 * PAD as u32)
        );
        seen.extend(offsets.iter().copied());
        // Every image of element i matches pad-and-crop at element i's own offset.
        check_frames(&buffers, &offsets);
    }
    // All 49 offsets occur: each element draws its own.
    assert_eq!(seen.len(), (2 * PAD + 1).pow(2));
}

#[test]
fn uncropped_batches_copy_frames_exactly_and_crop_prob_is_per_batch() {
    let ds = coded_frames(&[20, 15, 30]);
    let centre = [PAD as u32, PAD as u32];
    let cfg = SamplerConfig {
        batch_size: 16,
        crop_prob: 0.0,
        ..SamplerConfig::bridge_pixels()
    };
    let mut sampler = Sampler::new(cfg.clone(), 2).unwrap();
    let mut buffers = sampler.buffers(&ds);
    sampler.sample(&ds, &mut buffers).unwrap();
    assert!(buffers.crop_offsets().is_none());
    check_frames(&buffers, &[centre; 16]);

    let mut sampler = Sampler::new(
        SamplerConfig {
            crop_prob: 0.5,
            ..cfg
        },
        2,
    )
    .unwrap();
    let batches = 400;
    let cropped = (0..batches)
        .filter(|_| {
            sampler.sample(&ds, &mut buffers).unwrap();
            buffers.crop_offsets().is_some()
        })
        .count();
    assert!(
        (160..240).contains(&cropped),
        "{cropped} of {batches} cropped"
    );
}
