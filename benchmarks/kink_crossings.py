"""How often do float32 trajectories part at a LeakyReLU kink? Runs the default check over
seeds and counts the runs where some pair's parameters were judged by float32 drift.

    python benchmarks/kink_crossings.py 12      # measured 2026-11-23 on CPU (check-v1): 4 of 12 runs, all passing
"""

import sys

from gan_backends import get_preset
from gan_backends.check import run_check

if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    crossed = 0
    for seed in range(runs):
        report = run_check(
            get_preset("mlp"), ["torch", "tensorflow", "jax", "numpy"], steps=10, batch_size=64, seed=seed
        )
        hit = any(row.note for pair in report.pairs for row in pair.rows)
        crossed += hit
        print(f"seed {seed}: {'PASS' if report.passed else 'FAIL'}, drift-judged rows: {hit}", flush=True)
    print(f"kink crossings in {crossed} of {runs} runs")
