"""Tolerance policy, in one place: how far two backends may part, by dtype and precision.

Errors are relative, ``rel = ||a - b|| / ||b||`` over the whole tensor (b is the second backend
of a pair; the float64 reference when it is one), with the max-abs error reported beside it.
A pair is judged at the looser precision of its two members.

Where the float32 numbers come from (measured on CPU, the ``mlp`` preset, batches 16 and 64,
seeds 0-1, every pair of torch/tensorflow/jax/numpy; see ``docs/agreement.md``): the worst
forward output parts by 7.4e-7 relative (D's logits, a 256-wide sum with cancellation), the
worst loss term by 1.2e-7, the worst gradient by 4.1e-6 (D's last bias: a batch mean of
terms of both signs), parameters after 1 and 10 Adam steps by up to 7e-6. The bounds sit 2.5-15x
above the worst measured: a check must not flake on another seed or batch size.

Parameters along a trajectory get a second judge (see ``agreement.judge_step`` and ``agreement.lock_rows``): float32
rounding that flips a LeakyReLU kink is amplified by Adam into lr-sized steps, so a pair that
misses ``param`` passes when its float64 runs agree and its float32 gap is within a few times
float32's own drift from float64.

TF32 keeps a 10-bit mantissa (unit roundoff 4.9e-4). Measured on an H100 (torch 2.11 and JAX
0.11 against the float64 reference, ``mlp`` at batch 64): values 5.1e-4, losses 2e-6, gradients
1.8e-2 (G's first kernel: the error of every TF32 matmul on the way back through D and G),
parameters after 10 steps 7.6e-4. The bounds sit 3-10x above.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS: tuple[str, ...] = ("value", "loss", "grad", "param")


@dataclass(frozen=True)
class Tolerance:
    value: float
    loss: float
    grad: float
    param: float

    def for_kind(self, kind: str) -> float:
        return getattr(self, kind)


TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "highest"): Tolerance(value=1e-12, loss=1e-12, grad=1e-10, param=1e-10),
    ("float64", "tf32"): Tolerance(value=1e-12, loss=1e-12, grad=1e-10, param=1e-10),
    ("float32", "highest"): Tolerance(value=3e-6, loss=2e-6, grad=3e-5, param=1e-5),
    ("float32", "tf32"): Tolerance(value=5e-3, loss=5e-3, grad=6e-2, param=3e-3),
}

_LOOSENESS = {"float64": 0, "float32": 1}


def tolerance(dtype_a: str, dtype_b: str, matmul_precision: str) -> Tolerance:
    """The tolerance for a pair computing in ``dtype_a`` and ``dtype_b``."""
    dtype = max(dtype_a, dtype_b, key=_LOOSENESS.__getitem__)
    return TOLERANCES[(dtype, matmul_precision)]
