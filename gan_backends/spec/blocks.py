"""Non-sequential networks: the residual block of SNGAN/SAGAN/BigGAN ResNets, and the walks that
reach the layers inside blocks.

``{"type": "Residual", "main": [layers...], "shortcut": [layers...]}`` computes
``y = main(x) + shortcut(x)``; an empty or absent shortcut is the identity (He et al. 2016). Each
branch is a layer sequence whose shapes are inferred like a network's; both must end in the same
shape (a shortcut that changes shape needs layers of its own: a learnable 1×1 ``Conv2D``, Miyato
et al. 2018, appendix B). Branches hold any layer type, blocks included.

Canonical names nest under the block's own: ``discriminator.2.main.0.kernel``,
``generator.1.shortcut.0.bias`` (``{network}.{index}.{branch}.{index}...{short name}``), which is
what :meth:`Residual.param_shapes` and :meth:`Residual.buffer_shapes` return (prefixed by the
network's ``{network}.{index}.``), and what torch's ``state_dict`` keys of an ``nn.Module`` with
``main`` and ``shortcut`` ``nn.Sequential`` children read (``2.main.0.weight``). :func:`walk`
yields every layer that is not a block with its canonical prefix and input shape;
:func:`layer_at` finds the layer a canonical name belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Shape, SpecError
from .fields import field_problems
from .layers import LAYER_TYPES, Layer, layer_from_dict

#: A block's branches, in the order their parameters are named and their outputs summed.
BRANCHES: tuple[str, str] = ("main", "shortcut")


def _sublayers(owner: str, branch: str, value: Any) -> tuple[Layer, ...]:
    """A branch given as layer specs or their dicts (``None``: empty)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise SpecError(f"{owner}.{branch} must be a list of layers, got {type(value).__name__}")
    out = []
    for j, item in enumerate(value):
        out.append(item if isinstance(item, Layer) else layer_from_dict(item, f"{branch} layer {j}"))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Residual(Layer):
    """``y = main(x) + shortcut(x)``, the shortcut the identity when empty.

    Shapes are inferred through each branch from the block's input; both branches must give the
    same shape, else a :class:`SpecError` says which gives what. Parameters and buffers are the
    sublayers', named ``{branch}.{index}.{short name}`` under the block (nested blocks nest
    further). The block is piecewise linear in its input when all its sublayers are (the gradient
    penalties need that of a critic).
    """

    type_name: ClassVar[str] = "Residual"
    main: tuple[Layer, ...]
    shortcut: tuple[Layer, ...] = ()

    def __post_init__(self) -> None:
        for branch in BRANCHES:
            object.__setattr__(self, branch, _sublayers("Residual", branch, getattr(self, branch)))
        if not self.main:
            raise SpecError("Residual.main has no layers (a block of an identity alone adds x to itself)")

    @classmethod
    def from_fields(cls, fields: dict[str, Any], where: str) -> Residual:
        """The block of a spec file's fields (``type`` removed); every problem of the block and of
        its sublayers at once, each with its path (``generator layer 3 Residual main layer 1 Conv2D``)."""
        problems = [f"{where} Residual: {p}" for p in field_problems(cls, fields)]
        branches: dict[str, tuple[Layer, ...]] = {}
        for branch in BRANCHES:
            value = fields.get(branch)
            if value is not None and not isinstance(value, list):
                problems.append(f"{where} Residual: {branch} must be a list of layers, got {type(value).__name__}")
                continue
            layers = []
            for j, item in enumerate(value or ()):
                try:
                    layers.append(layer_from_dict(item, f"{where} Residual {branch} layer {j}"))
                except SpecError as exc:  # already names its path
                    problems.append(str(exc))
            branches[branch] = tuple(layers)
        if problems:
            raise SpecError("; ".join(problems))
        try:
            return cls(**branches)
        except SpecError as exc:
            raise SpecError(f"{where} Residual: {exc}") from None

    def branches(self) -> tuple[tuple[str, tuple[Layer, ...]], ...]:
        """``(("main", layers), ("shortcut", layers))``."""
        return tuple((branch, getattr(self, branch)) for branch in BRANCHES)

    def branch_shapes(self, input_shape: Shape, branch: str) -> list[tuple[Shape, Shape]]:
        """``(input_shape, output_shape)`` of every layer of ``branch``, inferred in order; an error
        names the layer (``main layer 1 Conv2D(...)``)."""
        return chain_shapes(getattr(self, branch), input_shape, f"{branch} layer ")

    def output_shape(self, input_shape: Shape) -> Shape:
        ends = {}
        for branch, _ in self.branches():
            shapes = self.branch_shapes(input_shape, branch)
            ends[branch] = shapes[-1][1] if shapes else input_shape
        if ends["main"] != ends["shortcut"]:
            raise SpecError(
                f"main gives {ends['main']} but shortcut gives {ends['shortcut']}; a learnable 1×1 Conv2D "
                "shortcut is needed when shapes change"
            )
        return ends["main"]

    def _nested(self, input_shape: Shape, kind: str) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {}
        for branch, layers in self.branches():
            for j, (layer, (in_shape, _)) in enumerate(zip(layers, self.branch_shapes(input_shape, branch))):
                for name, shape in getattr(layer, kind)(in_shape).items():
                    shapes[f"{branch}.{j}.{name}"] = shape
        return shapes

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return self._nested(input_shape, "param_shapes")

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return self._nested(input_shape, "buffer_shapes")

    def describe(self) -> str:
        def count(n: int) -> str:
            return f"{n} layer{'s' if n != 1 else ''}"

        shortcut = count(len(self.shortcut)) if self.shortcut else "identity"
        return f"Residual(main: {count(len(self.main))}, shortcut: {shortcut})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, **{b: [layer.to_dict() for layer in ls] for b, ls in self.branches()}}


LAYER_TYPES[Residual.type_name] = Residual


def chain_shapes(layers: Sequence[Layer], input_shape: Shape, label: str) -> list[tuple[Shape, Shape]]:
    """``(input_shape, output_shape)`` of each of ``layers`` in order; an error is prefixed by
    ``{label}{index} {layer}: input shape ...``."""
    shape, shapes = input_shape, []
    for j, layer in enumerate(layers):
        try:
            out = layer.output_shape(shape)
        except SpecError as exc:
            raise SpecError(f"{label}{j} {layer.describe()}: input shape {shape}: {exc}") from None
        shapes.append((shape, out))
        shape = out
    return shapes


def walk(layers: Sequence[Layer], input_shape: Shape, prefix: str) -> Iterator[tuple[str, Layer, Shape]]:
    """``(canonical prefix, layer, input shape)`` of every layer of ``layers`` that is not a block,
    depth first in spec order (a block's main branch, then its shortcut); ``prefix`` is the
    network's (``discriminator``), so a leaf reads ``discriminator.2.main.0``."""
    for i, (layer, (in_shape, _)) in enumerate(zip(layers, chain_shapes(layers, input_shape, "layer "))):
        if isinstance(layer, Residual):
            for branch, sub in layer.branches():
                yield from walk(sub, in_shape, f"{prefix}.{i}.{branch}")
        else:
            yield f"{prefix}.{i}", layer, in_shape


def layer_at(layers: Sequence[Layer], path: str | Sequence[str]) -> Layer:
    """The layer at ``path`` (``"2.main.0"``, or its parts) of ``layers``: indices and branch
    names alternating, as in canonical names."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    layer = layers[int(parts[0])]
    for branch, index in zip(parts[1::2], parts[2::2]):
        layer = getattr(layer, branch)[int(index)]
    return layer


def describe_path(name: str) -> str:
    """Where a canonical prefix is, in words: ``discriminator.2.main.0`` -> ``discriminator layer 2
    Residual main layer 0``."""
    net, *parts = name.split(".")
    words = [f"{net} layer {parts[0]}"] if parts else [net]
    words += [f"Residual {branch} layer {index}" for branch, index in zip(parts[1::2], parts[2::2])]
    return " ".join(words)


__all__ = ["BRANCHES", "Residual", "chain_shapes", "describe_path", "layer_at", "walk"]
