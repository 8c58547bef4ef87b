"""Cross-check a user's own GAN loss against the float64 reference, and name the convention it follows.

    from gan_backends.losscheck import assert_loss_matches
    assert_loss_matches(my_d_loss, "hinge", role="d", framework="torch")

runs ``my_d_loss(real_logits, fake_logits)`` in PyTorch on the battery
(:mod:`~gan_backends.losscheck.battery`), compares its value and its gradient w.r.t. the logits
with the float64 reference, and on a mismatch raises with a diagnosis ("your loss equals least
squares without the ½ factor"; "a per-pixel norm: the gradient norm is taken over channels").
The command line is ``gan-backends losscheck MODULE:FUNCTION --framework F --loss NAME --role R``.

Layout: ``models`` (the zoo's losses and their variants in float64), ``relativistic`` (the
relativistic losses and theirs), ``critic`` (the penalty's critic and every way of writing the
penalty: WGAN-GP, R1, R2, R1 + R2), ``battery``, ``runners`` (reaches each framework
package's ``losscheck`` module: ``backends/<framework>/losscheck.py``), ``judge``, ``fit`` and
``diagnose`` (``findings``, ``logit_diagnosis``, ``penalty_diagnosis``,
``relativistic_diagnosis``), ``conventions`` (what a user may declare), ``check`` (the API).
"""

from __future__ import annotations

from .check import LossCheckError, LossCheckReport, assert_loss_matches, check_loss, load_function, resolve_loss
from .conventions import ConventionError, parse

__all__ = [
    "ConventionError",
    "LossCheckError",
    "LossCheckReport",
    "assert_loss_matches",
    "check_loss",
    "load_function",
    "parse",
    "resolve_loss",
]
