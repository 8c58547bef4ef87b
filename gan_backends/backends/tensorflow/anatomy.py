"""The graph of one TensorFlow training step: its operations in ``function`` (and ``eager``)
mode, the optimised XLA program's instructions and fusions in ``xla`` mode."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ...hlo import count_hlo

#: Graph operations that name or forward a value without computing (the count of the rest is
#: ``compute_ops``).
NO_COMPUTE = frozenset({"Const", "Identity", "IdentityN", "NoOp", "Placeholder"})


def _graph_ops(concrete: Any) -> list[str]:
    """The op types of a concrete function's graph and of every function in its library
    (gradients and nested calls live there, behind ``PartitionedCall`` ops)."""
    graph_def = concrete.graph.as_graph_def()
    ops = [node.op for node in graph_def.node]
    for function in graph_def.library.function:
        ops += [node.op for node in function.node_def]
    return ops


def graph_counts(backend: Any, batch: Any) -> dict[str, Any]:
    """``xla``: the optimised HLO's counts (:func:`gan_backends.hlo.count_hlo`); ``function``:
    the traced graph's ``graph_ops`` and ``compute_ops``, before Grappler rewrites it (it fuses
    MatMul + BiasAdd + activation at run time, so fewer kernels run); ``eager``: the same graph
    traced once for counting, its ops being what eager execution dispatches one by one."""
    alpha = backend._tensor(batch.alpha) if backend.spec.loss.penalty == "wgan_gp" else None
    args = (backend._tensor(batch.real), backend._tensor(batch.z_d), backend._tensor(batch.z_g), alpha)
    with tf.device(backend._device):
        if backend.mode == "xla":
            hlo = backend._train_step.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
            return {"source": "tf.function(jit_compile=True): optimized_hlo", **count_hlo(hlo)}
        fn = backend._train_step if backend.mode == "function" else tf.function(backend.train_step_fn)
        ops = _graph_ops(fn.get_concrete_function(*args))
    source = "tf.function graph, before Grappler" if backend.mode == "function" else "the step traced once"
    return {"source": source, "graph_ops": len(ops), "compute_ops": sum(op not in NO_COMPUTE for op in ops)}
