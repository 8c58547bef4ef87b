#!/usr/bin/env bash
# The GPU proof on a lent machine, in one command: bash benchmarks/gpu/prove.sh "$OUT" [--deadline S ...]
cd "$(dirname "$0")/../.." && { pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || pip install -q --no-deps -e . || echo "pip install failed: running from the checkout"; } && exec python -m benchmarks.gpu.prove --out "${1:?usage: prove.sh OUTDIR [options]}" "${@:2}"
