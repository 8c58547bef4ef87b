"""GAN losses on discriminator logits, written once for every backend.

Each function takes ``ops``, a tiny namespace with the two primitives the formulas need
(``softplus`` and ``mean``), so the same math runs on NumPy arrays, torch tensors, TF tensors
and JAX arrays. Every formula is on logits ``l`` with ``D(x) = sigmoid(l)``, using the stable
identities

    -log sigmoid(l)      = softplus(-l)
    -log(1 - sigmoid(l)) = softplus(l)
    softplus(l)          = log(1 + exp(l)) = max(l, 0) + log1p(exp(-|l|))

so no loss overflows or loses precision when D saturates. ``softplus`` must be exact: torch's
``F.softplus`` returns ``l`` past its threshold of 20, which is 2e-9 off and shows in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .spec import LossSpec


class LossOps(NamedTuple):
    """The array primitives the loss formulas use, provided by each backend."""

    softplus: Callable[[Any], Any]
    mean: Callable[[Any], Any]


LOSS_TERMS: tuple[str, ...] = ("d_real", "d_fake", "d_loss", "g_loss")


def discriminator_loss(ops: LossOps, real_logits: Any, fake_logits: Any, spec: LossSpec) -> dict[str, Any]:
    """Binary cross-entropy of D, the same for ``minimax`` and ``non_saturating``::

        d_real = mean_i softplus(-l_real_i)          (= mean -log D(x_i))
        d_fake = mean_i softplus(l_fake_i)           (= mean -log(1 - D(G(z_i))))
        d_loss = d_scale * (d_real + d_fake)

    (Goodfellow et al. 2014, eq. 1, D maximises the value function; ``d_scale`` is 1 there,
    0.5 in several tutorials.)
    """
    d_real = ops.mean(ops.softplus(-real_logits))
    d_fake = ops.mean(ops.softplus(fake_logits))
    return {"d_real": d_real, "d_fake": d_fake, "d_loss": spec.d_scale * (d_real + d_fake)}


def generator_loss(ops: LossOps, fake_logits: Any, spec: LossSpec) -> Any:
    """The generator's loss on ``l = logits of D(G(z))``.

    ``minimax`` (Goodfellow et al. 2014, eq. 1, the saturating form: G minimises
    log(1 - D(G(z))))::

        g_loss = mean_i log(1 - sigmoid(l_i)) = -mean_i softplus(l_i)

    ``non_saturating`` (same paper, section 3: G maximises log D(G(z)) instead)::

        g_loss = mean_i -log sigmoid(l_i) = mean_i softplus(-l_i)
    """
    if spec.name == "minimax":
        return -ops.mean(ops.softplus(fake_logits))
    if spec.name == "non_saturating":
        return ops.mean(ops.softplus(-fake_logits))
    raise ValueError(f"unknown loss {spec.name!r}")  # unreachable: LossSpec validates names
