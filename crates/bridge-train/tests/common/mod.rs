//! What the `bridge-train` command-line tests share: the binary and a small network size.

use std::process::{Command, Output};

/// `--set` arguments that shrink every network, so a CLI test trains in seconds.
pub const SMALL_NETS: [&str; 10] = [
    "--set",
    "latent_dim=16",
    "--set",
    "mrn_components=2",
    "--set",
    "mlp_hidden=[16]",
    "--set",
    "actor_hidden=[16]",
    "--set",
    "encoder_dim=16",
];

/// Runs the `bridge-train` binary of this build with `args`.
pub fn bridge_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bridge-train"))
        .args(args)
        .output()
        .expect("running bridge-train")
}
