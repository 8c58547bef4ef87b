"""What every part of the spec shares: the per-sample ``Shape``, :class:`SpecError`, and the field checks.

Kept apart from the layers, the training sections and :class:`~gan_backends.spec.gan.GANSpec` so
that each of those modules validates its fields the same way (with the same messages) without
importing another.
"""

from __future__ import annotations

from typing import Any

Shape = tuple[int, ...]


class SpecError(ValueError):
    """A spec that cannot describe a working GAN; the message names the layer and shapes."""


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def _require_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{name} must be true or false, got {value!r}")
