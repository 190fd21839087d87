#!/usr/bin/env bash
# The GPU machine's one script: checks and measures the CUDA build there, writing everything to
# the folder named by $OUT (or the first argument). Run from the repository root; that machine
# has no Rust, so the binaries come prebuilt (tools/cuda/build.sh) in BIN_DIR: bridge-train and
# policy-server.
#
#   usage: BIN_DIR=target/cuda/gpu-bin tools/cuda/device-run.sh [OUT_DIR]
#   extra: CACHE=DIR (a training cache: adds a timed pixel training run, step e)
#          STEP_TIMEOUT_S (per step, default 100), DEADLINE_S (no step starts after, default 420),
#          FIT_STEPS (step e, default 2000)
#
# Steps (each logged to OUT/<step>.txt, a summary table to OUT/summary.txt):
#   a. check-device: one pixel step's loss and gradients on CUDA against the CPU fast path
#   b. bridge-train bench on CUDA at the published sizes (state b256; pixels 64 px b256)
#   c. the JAX reference step (tools/jax-reference) on the same GPU, when a Python has JAX
#   d. policy latency at batch 1 (in b) and the policy-server round trip on CUDA
#   e. a timed pixel training run on CACHE, its checkpoint and metrics copied to OUT
# On a machine without a GPU the script stops at the first CUDA call (step a) and says why.
set -uo pipefail
# Errors as one plain line in the logs, not with a backtrace.
export RUST_BACKTRACE=0
out="${1:-${OUT:-target/device-run}}"
bin="${BIN_DIR:-target/cuda/gpu-bin}"
step_timeout="${STEP_TIMEOUT_S:-100}"
# The whole run stays under 8 minutes: a step starts only while this many seconds are left.
deadline_s="${DEADLINE_S:-420}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
[ -d "$bin" ] && bin="$(cd "$bin" && pwd)"
summary="$out/summary.txt"
: > "$summary"

note() { echo "$*" | tee -a "$summary"; }

# The CUDA user-space libraries: the Python wheels' (PyTorch's venv has cuBLAS, cuRAND, NVRTC
# for CUDA 13) and the driver's folder.
libs=""
for site in /opt/torch/.venv/lib/python3*/site-packages; do
    for d in "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib; do
        [ -d "$d" ] && libs="$libs:$d"
    done
done
for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64; do
    [ -e "$d/libcuda.so.1" ] && libs="$libs:$d"
done
export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
note "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$summary"

# bridge-run is not needed here: the device tool carries at most 64 MiB, and the three release
# binaries together are 65 MiB (bridge-train 27 MB, policy-server 18 MB, bridge-run 23 MB).
for b in bridge-train policy-server; do
    if [ ! -x "$bin/$b" ]; then
        note "device-run: $bin/$b is missing; build with tools/cuda/build.sh and carry it"
        exit 2
    fi
done

run_step() { # name, command...
    local name="$1"; shift
    if [ "$SECONDS" -ge "$deadline_s" ]; then
        note "step $name: skipped, the run has used its $deadline_s s"
        return 124
    fi
    local start=$SECONDS
    timeout "$step_timeout" "$@" > "$out/$name.txt" 2>&1
    local rc=$?
    note "step $name: exit $rc in $((SECONDS - start)) s ($out/$name.txt)"
    return $rc
}

# a. The first CUDA call. Without a usable GPU this is where the run ends.
if ! run_step a-check-device "$bin/bridge-train" check-device --device cuda --batch-size 32; then
    tail -n 3 "$out/a-check-device.txt" | tee -a "$summary"
    note "device-run: no usable CUDA device or the check failed; steps b-e not run"
    exit 1
fi
tail -n 1 "$out/a-check-device.txt" | tee -a "$summary"

# b. Training steps/s and actor latency at the published sizes.
run_step b-bench "$bin/bridge-train" bench --device cuda --steps 20 --queries 500 --pixel-batch 256
grep -E "train step|actor at batch 1" "$out/b-bench.txt" | tee -a "$summary"

# c. The JAX reference on the same GPU, with whichever Python has JAX.
py=""
for candidate in /opt/jax/.venv/bin/python /opt/torch/.venv/bin/python python3; do
    if "$candidate" -c 'import jax, optax' >/dev/null 2>&1; then py="$candidate"; break; fi
done
if [ -n "$py" ]; then
    (cd tools/jax-reference && run_step c-jax-pixel "$py" mqe_step.py --config pixel --batch 256 --steps 20)
    (cd tools/jax-reference && run_step c-jax-state "$py" mqe_step.py --config state --steps 20)
    grep -h RESULT "$out"/c-jax-*.txt | tee -a "$summary"
else
    note "step c: no Python with jax and optax found; JAX reference not run"
fi

# d. The policy-server round trip on the GPU (TCP loopback, batch 1).
run_step d-policy-server "$bin/policy-server" --checkpoint models/sim-demo --device cuda --bench 500
tail -n 2 "$out/d-policy-server.txt" | tee -a "$summary"

# e. A timed pixel training run, when a cache was carried.
if [ -n "${CACHE:-}" ]; then
    steps="${FIT_STEPS:-2000}"
    run_step e-fit "$bin/bridge-train" fit --data "$CACHE" --out "$out/e-fit" --device cuda --steps "$steps"
    tail -n 3 "$out/e-fit/metrics.jsonl" 2>/dev/null | tee -a "$summary"
fi
note "device-run: done"
