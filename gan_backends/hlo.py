"""Counts read from the text of a compiled XLA program (``HloModule`` text, as
``jax.jit(f).lower(...).compile().as_text()`` and TensorFlow's
``experimental_get_compiler_ir(...)(stage="optimized_hlo")`` print it). Framework-free: the text
is all it needs, so JAX's and TensorFlow's XLA programs are counted alike.

What runs when the program runs is its entry computation: each instruction there is one thing
the runtime executes (a fusion is one kernel however many elementwise ops it holds; a ``dot`` or
``convolution`` left unfused is a library call; ``while``/``call`` run sub-computations). Layout-
only instructions (parameters, tuples and their elements, bitcasts, constants) launch nothing
and are left out of ``launched``.
"""

from __future__ import annotations

import re

#: Entry instructions that move or name data without launching any work.
NO_LAUNCH = frozenset({"parameter", "tuple", "get-tuple-element", "bitcast", "constant", "after-all"})

# `%name = f32[64,256]{1,0} opcode(...)` or `name.1 = (f32[], ...) opcode(...)`; the shape may hold
# spaces inside a tuple, so the opcode is the word right before the first "(" after the shape.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][\w\-]*)\(")


def _opcode(line: str) -> str | None:
    m = _INSTRUCTION.match(line)
    return m.group(1) if m else None


def count_hlo(text: str) -> dict[str, int]:
    """``instructions`` in the whole module, ``fusions`` among them (fusion instructions: the
    computations they call are not counted again), and of the entry computation its
    ``entry_instructions`` and ``launched`` (those that run work, :data:`NO_LAUNCH` aside)."""
    total = fusions = entry = launched = 0
    in_entry = in_fused = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith("{") and "(" in stripped and "=" not in stripped.split("(")[0]:
            in_entry = stripped.startswith("ENTRY")
            in_fused = "fused" in stripped.split("(")[0] or stripped.startswith("%fused")
            continue
        if stripped == "}":
            in_entry = in_fused = False
            continue
        op = _opcode(line)
        if op is None or in_fused:
            continue
        total += 1
        fusions += op == "fusion"
        if in_entry:
            entry += 1
            launched += op not in NO_LAUNCH
    return {"instructions": total, "fusions": fusions, "entry_instructions": entry, "launched": launched}
