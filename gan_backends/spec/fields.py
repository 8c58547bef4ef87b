"""Checking a spec object's fields before it is built: every problem at once, each with a hint.

A dataclass's own ``TypeError`` (``Dense.__init__() got an unexpected keyword argument 'bias'``)
names one problem, in Python's words. :func:`field_problems` names every unknown and missing
field of one object, suggests the field meant (``bias`` → ``use_bias``: other frameworks' names
for this project's fields, then close spellings) and lists the fields the object takes.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

#: Other frameworks' names of this project's fields (torch, Keras, Flax), checked before spelling.
FOREIGN_NAMES: dict[str, tuple[str, ...]] = {
    "bias": ("use_bias",),
    "features": ("units", "filters"),
    "out_features": ("units",),
    "out_channels": ("filters",),
    "kernel_size": ("kernel",),
    "strides": ("stride",),
    "negative_slope": ("slope",),
    "alpha": ("slope",),
    "epsilon": ("eps",),
    "learning_rate": ("lr",),
    "beta_1": ("beta1",),
    "beta_2": ("beta2",),
    "b1": ("beta1",),
    "b2": ("beta2",),
}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'use_bias'?)`` or ``""``."""
    known = list(known)
    guesses = [k for k in FOREIGN_NAMES.get(name, ()) if k in known]
    guesses = guesses or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {guesses[0]!r}?)" if guesses else ""


def field_problems(cls: type, given: Mapping[str, Any], skip: Iterable[str] = ()) -> list[str]:
    """Every unknown and every missing required field of ``cls`` (a dataclass) in ``given``."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in set(skip)}
    problems = [f"unknown field {k!r}{did_you_mean(k, fields)}" for k in given if k not in fields and k not in skip]
    problems += [
        f"missing field {name!r}"
        for name, f in fields.items()
        if name not in given and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if problems:
        problems[-1] += f" (its fields: {', '.join(fields)})"
    return problems
