#!/usr/bin/env bash
# The agreement check on a GPU machine, one framework per process (TF and JAX reserve device
# memory at start-up). Usage: bash benchmarks/gpu_check.sh OUTDIR
set -uo pipefail
out=${1:-results/gpu}
mkdir -p "$out"
pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || pip install -q --no-deps -e .
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python -m gan_backends.cli info
for fw in torch jax tensorflow; do
  python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('$fw') is None)" || { echo "$fw: not installed, skipped"; continue; }
  for prec in highest tf32; do
    python -m gan_backends.cli check --backends "$fw,numpy" --precision $prec --quiet --json "$out/check-$fw-$prec.json"
    echo "$fw $prec exit=$?"
  done
  python -m gan_backends.cli check --backends "$fw,numpy" --dtype float64 --quiet --json "$out/check-$fw-float64.json"
  echo "$fw float64 exit=$?"
done
