#!/usr/bin/env bash
# Checks a CUDA build (tools/cuda/build.sh) on a machine with no GPU and no driver, as CI is:
# the binaries name no CUDA library as needed, start, fall back to the CPU under --device auto
# with one line that says why, and the GPU machine's script runs up to its first CUDA call.
#
#   usage: tools/cuda/check-no-driver.sh BIN_DIR
set -euo pipefail
bin="$1"
# Errors as one plain line in the logs, not with a backtrace.
export RUST_BACKTRACE=0
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

for b in bridge-train bridge-run policy-server; do
    needed="$(readelf -d "$bin/$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
    echo "$b needs: $needed"
    if echo "$needed" | grep -Eq 'libcuda|libcublas|libnvrtc|libcurand|libcudart'; then
        echo "check-no-driver: $b is linked to a CUDA library; it would not start without one" >&2
        exit 1
    fi
    "$bin/$b" --help > /dev/null
done

# --device auto on a cuda build without a GPU: the CPU, and one line saying why. The check
# itself compares the portable ops (what the GPU runs) with the CPU kernels at 64 px.
log="$(mktemp)"
"$bin/bridge-train" check-device --device auto --batch-size 2 2>&1 | tee "$log" | tail -n 2
grep -q "device: CPU (--device auto: " "$log" || {
    echo "check-no-driver: bridge-train --device auto did not log its CPU fallback" >&2
    exit 1
}
if "$bin/bridge-train" bench --device cuda --steps 1 --queries 1 --no-pixels > "$log" 2>&1; then
    echo "check-no-driver: --device cuda succeeded on a machine without a GPU" >&2
    exit 1
fi
echo "--device cuda refused: $(tail -n 1 "$log")"

# The GPU script, dry: it must stop at its first CUDA call with exit 1 and say so.
set +e
BIN_DIR="$bin" tools/cuda/device-run.sh "$root/target/device-run-dry" > "$log" 2>&1
rc=$?
set -e
tail -n 4 "$log"
if [ "$rc" -ne 1 ] || ! grep -q "steps b-e not run" "$log"; then
    echo "check-no-driver: the device script's dry run ended with $rc, not at its first CUDA call" >&2
    exit 1
fi
rm -f "$log"
echo "check-no-driver: ok"
