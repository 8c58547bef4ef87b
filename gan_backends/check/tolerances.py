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

Lock-step updates (``update``: one step from the reference's state, the stored update against
the reference's) measured 1e-6 median and 1.9e-5 at worst on 100 steps of ``mlp``; the worst is
always step 1, where Adam's update ``lr*g/(|g|+eps)`` is most sensitive to small ``|g|``. The
bound is 5x above.

Rows that miss these bounds get a second judge (``verdicts.judge_step``,
``verdicts.judge_gradients_at_kinks``, ``verdicts.lock_rows``): float32 rounding that puts a
pre-activation on the other side of a LeakyReLU kink changes a gradient entry, and Adam amplifies
it; such a row passes only when the float64 runs of the same code agree to float64 precision and
the gap is within a few times float32's own error.

bf16 (``matmul_precision="bf16"``: Dense operands and products rounded to bfloat16, unit
roundoff 3.9e-3; see ``spec.Numerics``), measured on CPU (``mlp`` and ``tiny``, batch 64, seeds
0-1, 10 steps, torch/tensorflow/jax against the float64 reference): values 5.4e-3, losses
3.4e-4, gradients 7.6e-2 (every backward matmul is bf16 too), parameters after 10 steps 2.6e-3,
lock-step updates 0.21 (Adam's ``m/sqrt(v)`` on bf16 gradients). The three frameworks agree far
better with each other (layer outputs 3.3e-4 on ``mlp``, 9e-8 on ``tiny``: the same roundings
but for accumulation order). The bounds sit 3-6x above the worst measured.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS: tuple[str, ...] = ("value", "loss", "grad", "param", "update")


@dataclass(frozen=True)
class Tolerance:
    value: float
    loss: float
    grad: float
    param: float
    #: A lock-step parameter update against the reference's (see ``verdicts.lock_rows``).
    update: float

    def for_kind(self, kind: str) -> float:
        return getattr(self, kind)


TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "highest"): Tolerance(value=1e-12, loss=1e-12, grad=1e-10, param=1e-10, update=1e-10),
    ("float32", "highest"): Tolerance(value=3e-6, loss=2e-6, grad=3e-5, param=1e-5, update=1e-4),
    ("float32", "tf32"): Tolerance(value=5e-3, loss=5e-3, grad=6e-2, param=3e-3, update=0.2),
    ("float32", "bf16"): Tolerance(value=3e-2, loss=2e-3, grad=0.25, param=1e-2, update=0.6),
}

_LOOSENESS = {"float64": 0, "float32": 1}


def tolerance(dtype_a: str, dtype_b: str, matmul_precision: str) -> Tolerance:
    """The tolerance for a pair computing in ``dtype_a`` and ``dtype_b``."""
    dtype = max(dtype_a, dtype_b, key=_LOOSENESS.__getitem__)
    if dtype == "float64":  # float64 runs compute every matmul in float64, whatever the precision mode
        return TOLERANCES[("float64", "highest")]
    return TOLERANCES[(dtype, matmul_precision)]
