#!/usr/bin/env bash
# The agreement check of the full-size dcgan preset (64x64x3) with every loss, on CPU, all three
# frameworks against the float64 reference; one JSON report per loss, then a Markdown summary.
#   bash benchmarks/dcgan_agreement.sh [OUTDIR] [BATCH] [STEPS]
# Measured with batch 8 and 2 steps on this project's 2-core CPU machine (docs/agreement.md).
set -euo pipefail
out=${1:-benchmarks/results/agreement}
batch=${2:-8}
steps=${3:-2}
mkdir -p "$out"
for loss in non_saturating minimax least_squares hinge wgan wgan-gp r1; do
  echo "== dcgan --loss $loss"
  gan-backends check --spec dcgan --loss "$loss" --batch-size "$batch" --steps "$steps" --quiet \
    --json "$out/cpu-dcgan-$loss.json" || echo "!! dcgan --loss $loss FAILED"
done
python benchmarks/summarize_check.py "$out"/cpu-dcgan-*.json
