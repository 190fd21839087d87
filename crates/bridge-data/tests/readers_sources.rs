//! Source discovery and dispatch over the whole fixture tree.

mod readers_common;

use bridge_data::sources::{self, ReadOptions, Source};
use readers_common::*;

#[test]
fn discover_finds_every_fixture_source_and_each_reads() {
    let found = sources::discover(&fixtures_dir()).unwrap();
    let count = |pick: fn(&Source) -> bool| found.iter().filter(|s| pick(s)).count();
    assert_eq!(count(|s| matches!(s, Source::RawTrajectory(_))), 5);
    assert_eq!(count(|s| matches!(s, Source::TfRecordShard(_))), 2);
    assert_eq!(count(|s| matches!(s, Source::NumpyRelease(_))), 1);
    assert_eq!(found.len(), 8, "{found:?}");
    let paths: Vec<_> = found.iter().map(Source::path).collect();
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "sorted by path");
    let trajectories: usize = found
        .iter()
        .map(|source| source.read(&ReadOptions::default()).unwrap().len())
        .sum();
    assert_eq!(trajectories, 5 + 3 + 2);
}

#[test]
fn discover_accepts_a_single_file_and_refuses_others() {
    let shard = fixtures_dir().join("tfrecord/bridge_dataset-train.tfrecord-00000-of-00002");
    assert_eq!(
        sources::discover(&shard).unwrap(),
        vec![Source::TfRecordShard(shard.clone())]
    );
    let json = fixtures_dir().join("expected.json");
    let error = sources::discover(&json).unwrap_err().to_string();
    assert!(
        error.contains("expected.json") && error.contains("not a Bridge source"),
        "{error}"
    );
    let missing = fixtures_dir().join("no_such_dir");
    let error = sources::discover(&missing).unwrap_err().to_string();
    assert!(error.contains("no_such_dir"), "{error}");
}

#[test]
fn read_errors_name_the_source() {
    let temp = tempfile::tempdir().unwrap();
    let shard = temp.path().join("x.tfrecord");
    std::fs::write(&shard, [1, 2, 3]).unwrap();
    let error = Source::TfRecordShard(shard)
        .read(&ReadOptions::default())
        .unwrap_err();
    assert!(error.to_string().contains("x.tfrecord"), "{error}");
}
