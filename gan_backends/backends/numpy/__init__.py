"""The float64 NumPy reference: forward, backward and the optimisers written from the math.

The package's modules: ``layers`` (each spec layer's forward and hand-written backward, one
table), ``network`` (a spec network run layer by layer through that table), ``optim`` (Adam,
RMSprop, SGD in torch's form), ``backend`` (:class:`NumpyReference`).
It imports no framework and shares no code with the framework packages beyond the spec, the
loss formulas and the canonical tree.
"""

from __future__ import annotations

from ..manifest import Manifest

MANIFEST = Manifest(
    name="numpy",
    package=__name__,
    backend="backend:NumpyReference",
    requires=("numpy",),
    extra=None,
    aliases=("reference",),
    layer_tables=("layers:LAYER_MATH",),
    modes=("float64",),
    host_only=True,
)
