#!/usr/bin/env bash
# Builds bridge-train, bridge-run and policy-server with `--features cuda` on a machine with no GPU
# (a CPU box or CI): installs the CUDA 13.0 compiler from PyPI wheels, patches candle so that the
# CUDA libraries are loaded at run time (tools/cuda/patch-candle.py), and compiles the kernels
# for CUDA_COMPUTE_CAP (default 80: sm_80 PTX, which Ampere, Hopper and newer GPUs all run).
#
#   usage: tools/cuda/build.sh [--profile dev|release] [--target-dir DIR]
#   output: DIR/gpu-bin/{bridge-train,bridge-run,policy-server}, stripped (default DIR: target/cuda);
#           the unstripped ones stay in DIR/<profile>/
#
# Cargo.lock is left as it was: the patch is given with --config for this build only.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

profile=release
target_dir="$root/target/cuda"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --target-dir) target_dir="$2"; shift 2 ;;
        *) echo "build.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

# The patch below points Cargo.lock at the patched copies for this build only; the committed
# lock comes back on every exit, also a failed or interrupted one.
patched="$root/target/cuda-patches"
mkdir -p "$patched"
if ! cargo metadata --format-version 1 --locked > /dev/null; then
    echo "build.sh: Cargo.lock does not match the workspace (an earlier build interrupted?);" \
        "run any plain cargo command to re-lock, then try again" >&2
    exit 1
fi
cp Cargo.lock "$patched/Cargo.lock.committed"
trap 'cp "$patched/Cargo.lock.committed" Cargo.lock' EXIT

export CUDA_HOME
CUDA_HOME="$(tools/cuda/install-toolkit.sh)"
export PATH="$CUDA_HOME/bin:$PATH"
# No GPU to ask: candle-kernels compiles PTX for this compute capability. Caps >= 90 become
# sm_90a (candle >= 0.10), which only Hopper runs.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
echo "build.sh: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') at $CUDA_HOME, compute cap $CUDA_COMPUTE_CAP" >&2

crate_dirs="$(python3 tools/cuda/patch-candle.py "$patched")"
config=()
for dir in $crate_dirs; do
    name="$(basename "$dir" | sed 's/-[0-9][0-9.]*$//')"
    config+=(--config "patch.crates-io.$name.path=\"$dir\"")
done
if [ "${#config[@]}" -ne 4 ]; then
    echo "build.sh: expected patched candle-core and candle-kernels, got: $crate_dirs" >&2
    exit 1
fi

cargo build --profile "$profile" --target-dir "$target_dir" "${config[@]}" \
    -p bridge-train -p bridge-run -p policy-server \
    --features bridge-train/cuda,bridge-run/cuda,policy-server/cuda
out_dir="$target_dir/$([ "$profile" = dev ] && echo debug || echo "$profile")"

# Stripped copies, small enough to carry to a GPU machine (the device tool takes 64 MiB).
bundle="$target_dir/gpu-bin"
mkdir -p "$bundle"
for b in bridge-train bridge-run policy-server; do
    strip --strip-debug -o "$bundle/$b" "$out_dir/$b"
done
echo "build.sh: built $bundle/{bridge-train,bridge-run,policy-server} ($(du -sh "$bundle" | cut -f1))" >&2
echo "$bundle"
