"""The XLA program of one JAX training step: its instructions and fusions, from the compiled
text (the executable is already in jit's cache after the timed steps: no compile here)."""

from __future__ import annotations

from typing import Any

from ...hlo import count_hlo


def compiled_step_counts(backend: Any, batch: Any) -> dict[str, Any]:
    """Counts of the compiled step (:func:`gan_backends.hlo.count_hlo`) and XLA's own cost
    analysis (its FLOPs and bytes accessed); op by op (mode ``eager``) there is no program."""
    if backend.mode != "jit":
        return {"source": f"mode {backend.mode!r} runs op by op: no compiled program to count"}
    alpha = backend._array(batch.alpha) if backend.spec.loss.penalty == "wgan_gp" else None
    args = (backend._array(batch.real), backend._array(batch.z_d), backend._array(batch.z_g), alpha)
    compiled = backend._train_step.lower(backend.state, *args).compile()
    counts: dict[str, Any] = {"source": "jax.jit(...).lower(...).compile().as_text()", **count_hlo(compiled.as_text())}
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one per program in older JAX
    if cost:
        counts.update(xla_flops=cost.get("flops"), xla_bytes_accessed=cost.get("bytes accessed"))
    return counts
