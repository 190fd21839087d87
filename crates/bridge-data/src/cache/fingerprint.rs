//! Source fingerprints and the hash-based train/validation split.

use std::path::{Path, PathBuf};

use super::format::{CacheError, io_err};

/// 64-bit FNV-1a: tiny, stable across builds and platforms (unlike `DefaultHasher`), and
/// enough for change detection and split keys (not an adversarial setting).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fnv(u64);

impl Fnv {
    pub(super) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A field: its bytes and a separator, so ("ab", "c") and ("a", "bc") differ.
    pub(super) fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    pub(super) fn finish(self) -> u64 {
        self.0
    }
}

/// splitmix64's finaliser: spreads FNV's weakly mixed high bits.
fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The split key of a trajectory named `name` (its provenance relative to the input root).
pub fn split_key(name: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(name.as_bytes());
    mix64(h.finish())
}

/// Whether a trajectory with `split_key` is held out when `fraction` of them are: the key's
/// top 53 bits as a uniform number in [0, 1), below `fraction`. Deterministic, and a larger
/// fraction only adds trajectories to the validation set.
pub fn is_validation(split_key: u64, fraction: f64) -> bool {
    let unit = (split_key >> 11) as f64 / (1u64 << 53) as f64;
    unit < fraction
}

/// Fingerprint of a source file or directory: [`SOURCE_HASH_SCHEME`](super::SOURCE_HASH_SCHEME),
/// as `fnv1a64:<hex>`.
pub fn source_fingerprint(path: &Path) -> Result<String, CacheError> {
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    let mut h = Fnv::new();
    for (relative, file) in &files {
        let meta = std::fs::metadata(file).map_err(io_err(file))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.field(relative.as_bytes());
        h.field(&meta.len().to_le_bytes());
        h.field(&mtime_ns.to_le_bytes());
    }
    Ok(format!("fnv1a64:{:016x}", h.finish()))
}

fn collect_files(
    root: &Path,
    path: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), CacheError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        let relative = path.strip_prefix(root).unwrap_or(path);
        out.push((relative.to_string_lossy().into_owned(), path.to_path_buf()));
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_err(path))? {
            let entry = entry.map_err(io_err(path))?;
            collect_files(root, &entry.path(), out)?;
        }
    }
    Ok(())
}
