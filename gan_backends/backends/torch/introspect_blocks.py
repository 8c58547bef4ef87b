"""The residual structure of a user's traced torch model (for :mod:`.introspect`).

A ResNet's forward (``self._residual(x) + self._shortcut(x)``, SNGAN's and BigGAN's blocks)
traces with ``torch.fx`` into a graph whose ``add`` nodes join two paths from one value. Read
back from the output, each ``add`` becomes a :class:`Block` (the spec's ``Residual``): its main
branch is the add's first operand's path back to the fork, its shortcut the second's (empty
where that operand is the fork itself: the identity; when the first one is, the two swap).
Python branches on module attributes (``if self.learnable_sc``, ``if self.upsample``) are
resolved by the tracing of the module instance, so such blocks read as written.

In-place ops are followed as torch runs them: ``nn.ReLU(inplace=True)`` on a value that a later
node also reads hands that node the rectified value. Mimicry's ``DBlock`` is the case: its main
branch's first ReLU rectifies the block's input in place, so its shortcut (and an identity
shortcut) sees ``relu(x)``; read so, the block is ``ReLU`` then ``Residual``, which is what the
module computes. Nodes that compute sizes (``x.shape[0]``, ``x.size(0)``) are skipped: a view
that takes them reads the batch axis only. A value used by anything outside its chain or block
(a DenseNet's concatenation, a second head) is refused with the node named.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ...spec import Layer, SpecError

_ADDS = (operator.add, torch.add, operator.iadd)


@dataclass
class Op:
    """One layer read from a node: its label (module class or function name), the op
    (a spec layer or a shape op for :mod:`.introspect` to resolve) and the node's name."""

    label: str
    op: Layer | str
    node: str


@dataclass
class Block:
    """A residual block read from an ``add``: the two branches' items, the add's node name."""

    main: list[Op | Block]
    shortcut: list[Op | Block] = field(default_factory=list)
    node: str = ""
    label: str = "add"


Item = Op | Block


def is_meta(node: torch.fx.Node) -> bool:
    """A node computing sizes, not tensors: ``x.shape``, ``x.size()``, an index into either."""
    if node.op == "call_function" and node.target is builtins.getattr:
        return node.args[1] in ("shape", "ndim", "dtype", "device")
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target in (operator.getitem, builtins.len):
        return isinstance(node.args[0], torch.fx.Node) and is_meta(node.args[0])
    return False


def is_add(node: torch.fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _ADDS) or (node.op == "call_method" and node.target == "add")


def _inplace(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` overwrites its input: a module with ``inplace=True``, ``F.relu(x,
    inplace=True)``, ``F.leaky_relu(x, 0.2, True)``, ``x.relu_()``."""
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    if node.op == "call_function" and node.target in (F.relu, F.leaky_relu, F.relu6, F.elu):
        position = 1 if node.target is F.relu else 2
        return bool(node.kwargs.get("inplace", node.args[position] if len(node.args) > position else False))
    return node.op == "call_method" and str(node.target).endswith("_") and not str(node.target).startswith("_")


class GraphReader:
    """The items of a traced model, read back from its output (see the module docstring)."""

    def __init__(
        self,
        traced: torch.fx.GraphModule,
        modules: dict[str, nn.Module],
        where: str,
        read: Callable[[torch.fx.Node], tuple[str, Layer | str]],
    ):
        self.where, self.read, self.modules = where, read, modules
        self.nodes = [n for n in traced.graph.nodes if not is_meta(n)]
        self.position = {n: i for i, n in enumerate(self.nodes)}
        self.overwrites: dict[torch.fx.Node, list[torch.fx.Node]] = {}
        for n in self.nodes:
            if n.op not in ("placeholder", "output") and not is_add(n) and _inplace(n, modules):
                self.overwrites.setdefault(self._raw_input(n), []).append(n)
        self.visited: set[torch.fx.Node] = set()

    def _raw_input(self, node: torch.fx.Node) -> torch.fx.Node:
        inputs = [a for a in node.all_input_nodes if not is_meta(a)]
        if len(inputs) != 1:
            raise SpecError(
                f"{self.where}: node {node.name} ({node.target}) takes {len(inputs)} tensors; the spec's layers "
                "take one (and a residual add two)"
            )
        return inputs[0]

    def _value(self, node: torch.fx.Node, at: torch.fx.Node) -> torch.fx.Node:
        """What ``at`` reads when its graph input is ``node``: the last in-place op on it before ``at``."""
        later = [n for n in self.overwrites.get(node, []) if self.position[n] < self.position[at] and n is not at]
        return self._value(later[-1], at) if later else node

    def inputs(self, node: torch.fx.Node) -> list[torch.fx.Node]:
        raw = [a for a in node.all_input_nodes if not is_meta(a)] if is_add(node) else [self._raw_input(node)]
        if is_add(node) and len(raw) != 2:
            raise SpecError(f"{self.where}: node {node.name} adds a constant or three values; a residual adds two")
        return [self._value(n, node) for n in raw]

    def _pred(self, node: torch.fx.Node) -> torch.fx.Node | None:
        if node.op == "placeholder":
            return None
        return self._fork(node) if is_add(node) else self.inputs(node)[0]

    def _fork(self, add: torch.fx.Node) -> torch.fx.Node:
        a, b = self.inputs(add)
        seen, node = [], a
        while node is not None:
            seen.append(node)
            node = self._pred(node)
        node = b
        while node is not None:
            if node in seen:
                return node
            node = self._pred(node)
        raise SpecError(f"{self.where}: the add {add.name} joins two values with no common input")

    def chain(self, value: torch.fx.Node, stop: torch.fx.Node) -> list[Item]:
        """The items computing ``value`` from ``stop``."""
        items: list[Item] = []
        while value is not stop:
            if value.op == "placeholder":
                raise SpecError(f"{self.where}: a path reaches the input without passing its block's fork")
            if is_add(value):
                fork = self._fork(value)
                a, b = self.inputs(value)
                self.visited.add(value)
                main, shortcut = self.chain(a, fork), self.chain(b, fork)
                if not main:
                    main, shortcut = shortcut, main
                if not main:
                    raise SpecError(f"{self.where}: the add {value.name} adds a value to itself")
                items.append(Block(main, shortcut, value.name))
                value = fork
                continue
            label = self._label(value)
            items.append(Op(label, *self._read(value, label)))
            self.visited.add(value)
            value = self.inputs(value)[0]
        items.reverse()
        return items

    def _label(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            return type(self.modules[node.target]).__name__
        return getattr(node.target, "__name__", str(node.target))

    def _read(self, node: torch.fx.Node, label: str) -> tuple[Layer | str, str]:
        if node.op == "call_function" and node.target is operator.getitem:
            raise SpecError(f"{self.where}: indexing a tensor (node {node.name}) has no spec layer")
        return self.read(node)[1], node.name

    def items(self) -> list[Item]:
        """Every item from the model's one input to its one output, each value used once."""
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        output = next(n for n in self.nodes if n.op == "output")
        result = output.args[0]
        if not isinstance(result, torch.fx.Node) or not inputs:
            raise SpecError(f"{self.where}: its forward returns {type(result).__name__}, not one tensor")
        items = self.chain(self._value(result, output), inputs[0])
        for node in self.nodes:
            if node.op not in ("placeholder", "output") and node not in self.visited:
                raise SpecError(
                    f"{self.where}: node {node.name} ({self._label(node)}) is on no path from the input to the "
                    "output through a chain or a residual block (a second head, a concatenation, a parameter used "
                    "directly?)"
                )
        return items
