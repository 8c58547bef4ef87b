"""Conventions a user may declare (``--convention key=value``): each turns a known, intended
difference from the zoo's loss into a pass. The diagnosis prints the declaration that would
accept what it found, so the two speak one vocabulary.

Logit losses (D and G)::

    scale=k                 the whole loss times k (D loss ½: scale=0.5; least squares without ½: scale=2)
    reduction=sum           a sum over the logits instead of their mean
    offset=c                a constant added to the loss
    real_target=t           cross-entropy target of real logits (one-sided label smoothing s: t = 1 - s)
    fake_target=u           cross-entropy target of fake logits (G: its target label)
    label_smoothing=s       TF-GAN's: real labels smoothed toward ½, t = 1 - s/2
    fake_label_smoothing=s  fake labels smoothed toward ½: u = s/2
    label_smoothing_both=s  Keras' BinaryCrossentropy(label_smoothing=s) on both terms: t = 1 - s/2, u = s/2
    a=, b=, c=              least squares targets (Mao et al. 2017)
    margin=m                hinge margin
    probabilities=true      computed from sigmoid probabilities: judged only where they do not saturate

Relativistic losses (rasgan, ralsgan, rahinge, rpgan)::

    scale=k                 the whole loss times k (the RaLSGAN author's code: scale=0.5)
    reduction=sum           a sum over the logits instead of their mean

Penalties::

    penalty_weight=λ        the weight inside the returned penalty (1: the caller multiplies)
    reduction=sum           summed over the batch
    one_sided=true          relu(‖g‖ - γ)² (Gulrajani et al.'s appendix variant)
    target=γ                WGAN-GP's norm target: (‖g‖ - γ)²/γ² (Karras et al. 2017)

A spec field's own name declares it too (``d_scale``, ``g_scale``, ``label_smoothing``,
``one_sided_label_smoothing``, ``penalty_weight``, ``penalty_target``, ``penalty_one_sided``),
so every option a training spec has can be declared: :data:`SPEC_FIELDS` maps each to its key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from ..spec import LossSpec
from .critic import PenaltyForm
from .models import LogitModel, Role, reference_model, with_term
from .relativistic import RelativisticModel, reference_relativistic

LOGIT_KEYS = (
    "scale", "reduction", "offset", "real_target", "fake_target", "label_smoothing", "label_smoothing_both",
    "one_sided_label_smoothing", "fake_label_smoothing", "a", "b", "c", "margin", "probabilities",
)  # fmt: skip
PENALTY_KEYS = ("penalty_weight", "reduction", "one_sided", "scale", "target")
RELATIVISTIC_KEYS = ("scale", "reduction")

#: LossSpec fields (``--loss-param``) and the conventions that declare the same difference; the
#: fields not listed choose the loss itself (``name``, ``penalty``) or do not change its value
#: (``norm_eps`` keeps a gradient finite, ``clip_value`` acts on D's weights after the step).
SPEC_FIELDS: dict[str, str] = {
    "d_scale": "scale", "g_scale": "scale", "a": "a", "b": "b", "c": "c",
    "label_smoothing": "label_smoothing", "one_sided_label_smoothing": "one_sided_label_smoothing",
    "penalty_weight": "penalty_weight", "penalty_target": "target", "penalty_one_sided": "one_sided",
    "fake_label_smoothing": "fake_label_smoothing", "hinge_margin": "margin", "reduction": "reduction",
}  # fmt: skip
NOT_DECLARED = ("name", "penalty", "norm_eps", "clip_value")


def _aliases(conventions: Mapping[str, object], role: str) -> dict[str, object]:
    """Spec field names read as the conventions they declare (``d_scale`` only for D, ``g_scale`` for G)."""
    out: dict[str, object] = {}
    for key, value in conventions.items():
        if key in ("d_scale", "g_scale"):
            if (key == "d_scale") != (role in ("d", "penalty")):
                raise ConventionError(f"{key} weighs the {key[0].upper()} loss, not a {role} loss")
            if role == "penalty":
                raise ConventionError(f"{key} does not weigh the penalty, which carries its own penalty_weight")
        out[SPEC_FIELDS.get(key, key)] = value
    return out


class ConventionError(ValueError):
    """A declared convention that is unknown or does not apply to this loss."""


def parse(items: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``["scale=0.5", "reduction=sum"]`` (or comma-joined) to a dict."""
    out: dict[str, str] = {}
    for item in items or ():
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConventionError(f"--convention expects key=value, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _float(key: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConventionError(f"convention {key} needs a number, got {value!r}") from None


def _bool(key: str, value: object) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConventionError(f"convention {key} needs true or false, got {value!r}")


def declared_probabilities(conventions: Mapping[str, object]) -> bool:
    return "probabilities" in conventions and _bool("probabilities", conventions["probabilities"])


def logit_model(loss: LossSpec, role: Role, conventions: Mapping[str, object]) -> LogitModel:
    """The zoo's loss for ``role`` with the declared conventions applied."""
    conventions = _aliases(conventions, role)
    unknown = set(conventions) - set(LOGIT_KEYS)
    if unknown:
        raise ConventionError(
            f"unknown convention(s) {sorted(unknown)} for a {role} loss; known: {', '.join(LOGIT_KEYS)}"
        )
    targets = {k: _float(k, conventions[k]) for k in ("a", "b", "c") if k in conventions}
    if targets and loss.name != "least_squares":
        raise ConventionError(f"targets {sorted(targets)} apply to least_squares, not {loss.name}")
    model = reference_model(dataclasses.replace(loss, **targets), role)
    if "scale" in conventions:
        model = dataclasses.replace(model, scale=model.scale * _float("scale", conventions["scale"]))
    if "reduction" in conventions:
        red = str(conventions["reduction"])
        if red not in ("mean", "sum"):
            raise ConventionError(f"reduction is mean or sum, got {red!r}")
        model = dataclasses.replace(model, reduction=red)
    if "offset" in conventions:
        model = dataclasses.replace(model, offset=_float("offset", conventions["offset"]))
    bce_keys = {
        "real_target", "fake_target", "label_smoothing", "label_smoothing_both", "one_sided_label_smoothing",
        "fake_label_smoothing",
    }  # fmt: skip
    if bce_keys & set(conventions):
        if any(t.kind != "bce" for t in model.sides().values()):
            raise ConventionError(f"label targets apply to the cross-entropy losses, not {loss.name}")
        real_t, fake_t = _targets(conventions, model.real.param if model.real else 1.0, model.fake.param)
        if role == "d":
            model = with_term(with_term(model, "real", param=real_t), "fake", param=fake_t)
        elif "fake_target" in conventions:
            model = with_term(model, "fake", param=fake_t)
    if "margin" in conventions:
        if loss.name != "hinge" or role != "d":
            raise ConventionError("margin applies to the hinge D loss")
        m = _float("margin", conventions["margin"])
        model = with_term(with_term(model, "real", param=m), "fake", param=m)
    return model


def _targets(conventions: Mapping[str, object], real_t: float, fake_t: float) -> tuple[float, float]:
    if "one_sided_label_smoothing" in conventions:
        real_t = 1.0 - _float("one_sided_label_smoothing", conventions["one_sided_label_smoothing"])
    if "label_smoothing" in conventions:
        real_t = 1.0 - 0.5 * _float("label_smoothing", conventions["label_smoothing"])
    if "fake_label_smoothing" in conventions:
        fake_t = 0.5 * _float("fake_label_smoothing", conventions["fake_label_smoothing"])
    if "label_smoothing_both" in conventions:
        s = _float("label_smoothing_both", conventions["label_smoothing_both"])
        real_t, fake_t = 1.0 - 0.5 * s, 0.5 * s
    if "real_target" in conventions:
        real_t = _float("real_target", conventions["real_target"])
    if "fake_target" in conventions:
        fake_t = _float("fake_target", conventions["fake_target"])
    return real_t, fake_t


def penalty_form(loss: LossSpec, conventions: Mapping[str, object]) -> PenaltyForm:
    """The zoo's penalty (``loss.penalty``) with the declared conventions applied."""
    conventions = _aliases(conventions, "penalty")
    unknown = set(conventions) - set(PENALTY_KEYS)
    if unknown:
        raise ConventionError(
            f"unknown convention(s) {sorted(unknown)} for a penalty; known: {', '.join(PENALTY_KEYS)}"
        )
    weight = _float("penalty_weight", conventions.get("penalty_weight", loss.penalty_weight))
    weight *= _float("scale", conventions.get("scale", 1.0))
    red = str(conventions.get("reduction", loss.reduction))
    if red not in ("mean", "sum"):
        raise ConventionError(f"reduction is mean or sum, got {red!r}")
    one_sided = _bool("one_sided", conventions.get("one_sided", loss.penalty_one_sided))
    target = _float("target", conventions.get("target", loss.penalty_target))
    if (one_sided or target != 1.0) and loss.penalty != "wgan_gp":
        raise ConventionError("one_sided and target apply to the wgan_gp penalty")
    if target <= 0:
        raise ConventionError(f"target is the gradient norm's target, a positive number, got {target:g}")
    return PenaltyForm(kind=loss.penalty, weight=weight, reduction=red, one_sided=one_sided, target=target)


def relativistic_model(loss: LossSpec, role: Role, conventions: Mapping[str, object]) -> RelativisticModel:
    """The zoo's relativistic loss for ``role`` with the declared conventions applied."""
    conventions = _aliases(conventions, role)
    unknown = set(conventions) - set(RELATIVISTIC_KEYS)
    if unknown:
        raise ConventionError(
            f"unknown convention(s) {sorted(unknown)} for the relativistic loss {loss.name}; "
            f"known: {', '.join(RELATIVISTIC_KEYS)}"
        )
    model = reference_relativistic(loss, role)
    if "scale" in conventions:
        model = dataclasses.replace(model, scale=model.scale * _float("scale", conventions["scale"]))
    if "reduction" in conventions:
        red = str(conventions["reduction"])
        if red not in ("mean", "sum"):
            raise ConventionError(f"reduction is mean or sum, got {red!r}")
        model = dataclasses.replace(model, reduction=red)  # type: ignore[arg-type]
    return model


#: Each convention as training-spec options, where it is one: ``(value, role) -> LossSpec fields``.
#: ``offset`` changes no gradient (nothing to train), ``probabilities`` is how the inputs reach
#: the loss (a Sigmoid output layer), and G's own target label (TF-GAN's
#: ``modified_generator_loss(label_smoothing=s)``) has no LossSpec field yet.
AS_SPEC: dict[str, Callable[[float, str], dict[str, object]]] = {
    "scale": lambda v, role: {"g_scale" if role == "g" else "d_scale": v},
    "reduction": lambda v, role: {"reduction": v},
    "real_target": lambda v, role: {"one_sided_label_smoothing": round(1.0 - v, 12)},
    "fake_target": lambda v, role: {"fake_label_smoothing": 2.0 * v} if role == "d" else {},
    "label_smoothing": lambda v, role: {"label_smoothing": v},
    "one_sided_label_smoothing": lambda v, role: {"one_sided_label_smoothing": v},
    "fake_label_smoothing": lambda v, role: {"fake_label_smoothing": v},
    "label_smoothing_both": lambda v, role: {"label_smoothing": v, "fake_label_smoothing": v},
    "a": lambda v, role: {"a": v}, "b": lambda v, role: {"b": v}, "c": lambda v, role: {"c": v},
    "margin": lambda v, role: {"hinge_margin": v},
    "penalty_weight": lambda v, role: {"penalty_weight": v},
    "one_sided": lambda v, role: {"penalty_one_sided": v},
    "target": lambda v, role: {"penalty_target": v},
}  # fmt: skip
NOT_SPEC_OPTIONS = ("offset", "probabilities")


def as_spec_options(declarations: list[str], role: str) -> dict[str, object] | None:
    """``["scale=0.5", "reduction=sum"]`` as the LossSpec fields that train the same loss
    (``{"d_scale": 0.5, "reduction": "sum"}``), or None when one of them is no spec option."""
    out: dict[str, object] = {}
    for key, value in parse(declarations).items():
        key = SPEC_FIELDS.get(key, key)
        if key not in AS_SPEC:
            return None
        parsed: object = value
        if key == "one_sided":
            parsed = _bool(key, value)
        elif key != "reduction":
            parsed = _float(key, value)
        if key == "penalty_weight" and parsed == 1.0:
            return None  # a penalty returned without its weight: the caller multiplies λ in
        fields = AS_SPEC[key](parsed, role)  # type: ignore[arg-type]
        if not fields:
            return None
        out.update(fields)
    return out
