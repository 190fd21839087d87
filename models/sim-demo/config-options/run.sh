#!/bin/bash
# Issue 12 point 4: each configuration change at a fixed wall time, on the same cache and seed.
# Phase 1 measures each configuration's steps/s alone on the machine (nothing else running);
# phase 2 trains each for the steps that W seconds buy at that rate (contention-proof).
#
# Run it in a work folder holding play/ (the play data), cache/ (the 64 px training cache of
# models/sim-demo/README.md) and train.toml (a copy of models/sim-demo/train.toml); it writes
# cache32/ and p4/. BRIDGE_TRAIN names the release binary. In the recorded run (this folder's
# metrics-*.jsonl) the lr3e-4 and nocrop rows trained at the baseline's rate: their compute is the
# baseline's, and their phase-1 rates (speeds-measured.txt) differ from it by noise only.
set -u
cd "${WORK:-.}"
B=${BRIDGE_TRAIN:-target/release/bridge-train}
W=${W:-600}
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296
declare -A ARGS=(
  [baseline]=""
  [lr3e-4]="--set lr=3e-4"
  [batch64]="--batch-size 64"
  [nocrop]="--set crop_prob=0"
  [enc128]="--set encoder_dim=128 --set latent_dim=64"
  [px32]=""
)
ORDER="baseline lr3e-4 batch64 nocrop enc128 px32"
cache_of() { [ "$1" = px32 ] && echo cache32 || echo cache; }
mkdir -p p4
if [ ! -f cache32/manifest.toml ]; then
  $B prepare --input play --out cache32 --size-px 32 --crop-from "${CAMERA_TOML:-calibration/camera.toml}" > p4/prepare32.log 2>&1
fi
if [ "${PHASE:-1}" = 1 ]; then
  for name in $ORDER; do
    rm -rf p4/speed-$name
    $B fit --data $(cache_of $name) --out p4/speed-$name --config train.toml --steps 150 --loader-threads 1 --no-progress \
      --set eval_interval_steps=1000 --set checkpoint_interval_steps=100000 --set log_interval_steps=50 ${ARGS[$name]} > p4/speed-$name.log 2>&1
    sps=$(grep '"step":150,"split":"train"' p4/speed-$name/metrics.jsonl | sed 's/.*"steps_per_s":\([0-9.]*\).*/\1/')
    echo "$name $sps" >> p4/speeds
  done
fi
while read name sps; do
  steps=$(python3 -c "print(int($W*$sps))")
  rm -rf p4/$name
  $B fit --data $(cache_of $name) --out p4/$name --config train.toml --steps $steps --loader-threads 1 --no-progress \
    --set eval_interval_steps=$((steps/10)) --set checkpoint_interval_steps=100000 --set log_interval_steps=50 ${ARGS[$name]} > p4/$name.log 2>&1
  echo "$name $steps done $(date)" >> p4/progress
done < p4/speeds
echo all done >> p4/progress
