"""The spec read from a Flax module (linen or NNX): its submodule calls and the jax ops between.

A linen module does not know its input shape, so it is initialised with
``jax.random.PRNGKey(0)`` on zeros of the given per-sample shape (batch 2, so that a reshape
that keeps the batch axis can be told from one that does not), in inference mode where its
``__call__`` takes a ``train``/``training``/``deterministic`` flag, and then traced once with
``jax.make_jaxpr`` under ``nn.intercept_methods``:

- every call of ``nn.Dense``, ``nn.Conv``, ``nn.ConvTranspose``, ``nn.BatchNorm`` and
  ``nn.SpectralNorm`` (:mod:`.introspect_spectral`) runs
  inside a ``jax.named_scope`` of its own and its output passes a marker (a jitted identity),
  so the jaxpr's equations are grouped by the leaf call they belong to; the module's fields
  (every default explicit in a dataclass) give the spec layer;
- activations are functions, not submodules, so interception alone misses them: they are
  read from the jaxpr's equations outside every leaf scope, by name (``nn.relu``,
  ``nn.leaky_relu``, ``nn.tanh``/``jnp.tanh``, ``nn.sigmoid``; ``reshape`` for a reshape or
  flatten), and each is checked on a probe against the spec layer it was read as, so a
  function that only shares the name is refused rather than mistaken;
- user-written modules and ``nn.Sequential`` are opened (their own calls are read in place);
  any other Flax module (``nn.Dropout``, ``nn.LayerNorm``, ...) and any other jax op
  (``x * 2``, a residual ``x + y``, an activation written out as ``jnp.where``) is refused
  with its position and name. Each equation must take the previous one's output: a graph that
  is not one chain is refused.

An NNX module is traced the same way, its leaf calls recorded by :mod:`.introspect_nnx`
(``nnx.Linear`` is the spec's Dense). The jax ops are read by :mod:`.introspect_ops`.

Limits: activations written out by hand (``jnp.where(x > 0, x, 0.2 * x)``) are refused, not
read: they must be Flax's or jax.nn's functions. The trace runs on float32 zeros; a module
whose structure depends on the values (Python control flow on data) is read as that one call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
from flax import nnx

from ...port.native import PortError
from ...port.spec_from import NotExpressible, ReadNetwork, not_expressible
from ...spec import (
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    Layer,
    LeakyReLU,
    Reshape,
    Shape,
    SpecError,
    conv_pads,
    conv_transpose_crops,
)
from .introspect_leaf import MARK, leaf_of, record_leaf
from .introspect_leaf import Call as _Call
from .introspect_ops import ACTIVATIONS, computes, op_name
from .introspect_spectral import spectral_norm

WHERE = "flax module"
BATCH = 2
#: Flags that put a module's BatchNorm (and Dropout) in inference mode, with that value.
INFERENCE_FLAGS = {"train": False, "training": False, "is_training": False, "deterministic": True}
INFERENCE_FLAGS["update_stats"] = False  # nn.SpectralNorm's, often passed through by the caller


def _features(module: Any) -> int:
    """Output features: linen's ``features``, NNX's ``out_features``."""
    return int(module.features if isinstance(module, nn.Module) else module.out_features)


def _pair(reader: _Reader, value: Any, what: str) -> int:
    """A square size from an int or a pair (``None``: 1, Flax's default for strides)."""
    value = 1 if value is None else value
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or pair[0] != pair[1]:
        raise reader.fail(f"{what}={value}: the spec's convolutions are 2-D and square")
    return int(pair[0])


class _Reader:
    """The spec layers read so far, the notes, and the position of the op being read."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.notes: list[str] = []
        self.where = ("", "")
        self.index = 0  # the spec position of the call or op being read

    def fail(self, reason: str) -> NotExpressible:
        return not_expressible(WHERE, self.index, self.where[1], f"{self.where[0]}{reason}")

    def note(self, text: str) -> None:
        self.notes.append(f"layer {self.index} {self.where[1]}: {text}")

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)

    # -- leaf modules ----------------------------------------------------------------------

    def leaf(self, call: _Call) -> None:
        module = call.module
        name = module.name if isinstance(module, nn.Module) else None  # NNX modules have no name
        prefix = "nnx" if isinstance(module, nnx.Module) else "nn"
        self.where = (f"{name}: " if name else "", f"{prefix}.{type(module).__name__}")
        self.index = len(self.layers)
        reader = _LEAVES.get(type(module))
        if reader is None:
            raise self.fail(
                f"the spec has no {type(module).__name__}; it reads Dense/Linear, Conv, ConvTranspose, BatchNorm"
            )
        reader(self, call)

    def dense(self, call: _Call) -> None:
        if len(call.in_shape) != 1:
            raise self.fail(
                f"applied to {call.in_shape} per sample: the spec's Dense takes a flat input (flatten first)"
            )
        self.add(Dense(units=_features(call.module), use_bias=bool(call.module.use_bias)))

    def _conv_common(self, module: nn.Module, call: _Call) -> tuple[int, int]:
        if len(call.in_shape) != 3:
            raise self.fail(f"applied to {call.in_shape} per sample: the spec's convolutions take (H, W, C)")
        if getattr(module, "mask", None) is not None:
            raise self.fail("a kernel mask: the spec has none")
        if _pair(self, module.kernel_dilation, "kernel_dilation") != 1:
            raise self.fail(f"kernel_dilation={module.kernel_dilation}: the spec has no dilation")
        kernel = _pair(self, module.kernel_size, "kernel_size")
        stride = _pair(self, module.strides, "strides")
        return kernel, stride

    def _pads(self, padding: Any) -> tuple[tuple[int, int], ...] | str:
        if isinstance(padding, str):
            if padding not in ("SAME", "VALID"):
                raise self.fail(f"padding={padding!r}: the spec pads with zeros ('SAME', 'VALID' or explicit pairs)")
            return padding
        try:
            pairs = nn.linear.canonicalize_padding(padding, 2)
        except ValueError as exc:
            raise self.fail(str(exc)) from None
        return tuple((int(lo), int(hi)) for lo, hi in pairs)

    def conv(self, call: _Call) -> None:
        module = call.module
        kernel, stride = self._conv_common(module, call)
        if module.feature_group_count != 1 or _pair(self, module.input_dilation, "input_dilation") != 1:
            raise self.fail("feature_group_count or input_dilation != 1: the spec has neither")
        pads = self._pads(module.padding)
        if isinstance(pads, str):
            padding: int | str = pads.lower()  # lax's 'SAME' is TensorFlow's, as the spec's 'same'
        else:
            size = call.in_shape[:2]
            same = tuple(conv_pads(n, kernel, stride, "same") for n in size)
            if pads[0] == pads[1] and pads[0][0] == pads[0][1]:
                padding = pads[0][0]
            elif pads == same:
                padding = "same"
                self.note(f"padding {pads} is 'same' on a {size} input")
            else:
                raise self.fail(f"padding={pads}: the spec pads both sides alike, or 'same'")
        self.add(
            Conv2D(
                filters=_features(module),
                kernel=kernel,
                stride=stride,
                padding=padding,
                use_bias=bool(module.use_bias),
            )
        )
        if module.padding == "SAME":
            self.note("padding 'SAME' (Flax's default) -> 'same'")

    def conv_transpose(self, call: _Call) -> None:
        module = call.module
        kernel, stride = self._conv_common(module, call)
        pads = self._pads(module.padding)
        filters, use_bias = _features(module), bool(module.use_bias)
        if isinstance(pads, str):
            # lax.conv_transpose's 'SAME'/'VALID' crop the full output as the spec's 'same'/'valid'
            # do, k < s included (jax/_src/lax/convolution.py, _conv_transpose_padding)
            layer = ConvTranspose2D(
                filters=filters, kernel=kernel, stride=stride, padding=pads.lower(), use_bias=use_bias
            )
            if module.padding == "SAME":
                self.note("padding 'SAME' (Flax's default) -> 'same'")
        else:
            layer = self._explicit_transpose(call, kernel, stride, pads, filters, use_bias)
        self.add(layer)
        if module.transpose_kernel:
            self.note(
                "transpose_kernel=True: its kernel is canonical as stored; read its file with transpose_kernel=True"
            )

    def _explicit_transpose(
        self, call: _Call, kernel: int, stride: int, pads: tuple[tuple[int, int], ...], filters: int, use_bias: bool
    ) -> ConvTranspose2D:
        """Explicit pairs pad the stride-dilated input: the full output is ``(k - 1, k - 1)``, so
        ``(lo, hi)`` crops ``(k - 1 - lo, k - 1 - hi)``; the spec form with those crops."""
        crops = tuple((kernel - 1 - lo, kernel - 1 - hi) for lo, hi in pads)
        size = call.in_shape[:2]
        for padding in ("same", "valid"):
            if crops == tuple(conv_transpose_crops(n, kernel, stride, padding, 0) for n in size):
                self.note(f"padding {pads} crops {crops[0]}: the spec's {padding!r}")
                return ConvTranspose2D(
                    filters=filters, kernel=kernel, stride=stride, padding=padding, use_bias=use_bias
                )
        (before, after), other = crops[0], crops[1]
        output_padding = before - after
        if other != crops[0] or before < 0 or not 0 <= output_padding < stride:
            raise self.fail(
                f"padding={pads} crops {crops} of the full output: the spec crops (p, p - output_padding), "
                f"0 <= output_padding < stride, alike on both axes, or as 'same'/'valid'"
            )
        self.note(
            f"padding {pads} crops {crops[0]} -> padding={before}, output_padding={output_padding} (torch's form)"
        )
        return ConvTranspose2D(
            filters=filters,
            kernel=kernel,
            stride=stride,
            padding=before,
            output_padding=output_padding,
            use_bias=use_bias,
        )

    def batchnorm(self, call: _Call) -> None:
        module = call.module
        if module.axis not in (-1, len(call.in_shape)):
            raise self.fail(f"axis={module.axis}: the spec normalises the last (channel) axis")
        if not (module.use_bias and module.use_scale):
            raise self.fail("use_bias=False or use_scale=False: the spec's BatchNorm has both scale and bias")
        if module.axis_name is not None:
            raise self.fail(f"axis_name={module.axis_name!r}: statistics across devices; the spec's are per batch")
        flax_momentum, eps = float(module.momentum), float(module.epsilon)
        momentum = float(f"{1.0 - flax_momentum:.12g}")  # 1 - 0.99 is 0.010000000000000009 in binary
        self.add(
            BatchNorm(
                momentum=momentum,
                eps=eps,
                running_var="biased",
                momentum_convention="torch" if momentum > 0.5 else None,
            )
        )
        if call.kwargs.get("use_running_average", module.use_running_average) is False:
            self.note(
                "ran on batch statistics in the call read (no train/training/deterministic flag set it to "
                "inference); the spec's inference uses the running averages"
            )
        defaults = " (Flax's defaults)" if (flax_momentum, eps) == (0.99, 1e-5) else ""
        self.note(
            f"momentum {flax_momentum:g}, epsilon {eps:g}{defaults} -> BatchNorm(momentum={momentum:g}, eps={eps:g}); "
            "running variance stored biased, as Flax stores it"
        )

    # -- jax ops between the leaves --------------------------------------------------------

    def op(self, eqn: Any, in_shape: Shape) -> None:
        name = op_name(eqn)
        self.where, self.index = ("", f"jax op {name}"), len(self.layers)
        if eqn.primitive.name == "reshape":
            new = tuple(int(d) for d in eqn.params["new_sizes"])
            if eqn.params.get("dimensions") is not None or not new or new[0] != BATCH:
                raise self.fail(f"reshape to {new} mixes the batch axis in; the spec reshapes each sample")
            if len(new) == 1:
                raise self.fail("reshape to (batch,) drops the per-sample axis; a spec network keeps (1,)")
            self.add(Flatten() if len(new) == 2 and len(in_shape) > 1 else Reshape(shape=new[1:]))
            return
        make = ACTIVATIONS.get(name)
        if make is None:
            raise self.fail(
                f"the spec has no layer for it; between modules it reads {', '.join(sorted(ACTIVATIONS))} and reshape"
            )
        layer = make(eqn)
        if not computes(eqn, layer):
            raise self.fail(f"named like the spec's {layer.describe()} but computes something else on a probe")
        self.add(layer)
        if isinstance(layer, LeakyReLU) and len(eqn.invars) == 1:
            self.note(f"leaky_relu slope {layer.slope:g}" + (" (Flax's default)" if layer.slope == 0.01 else ""))


_LEAVES: dict[type, Callable[[_Reader, _Call], None]] = {
    nn.Dense: _Reader.dense,
    nn.Conv: _Reader.conv,
    nn.ConvTranspose: _Reader.conv_transpose,
    nn.BatchNorm: _Reader.batchnorm,
    nn.SpectralNorm: spectral_norm,  # the wrapped Dense or Conv with the spec's spectral_norm
    nnx.Linear: _Reader.dense,
    nnx.Conv: _Reader.conv,
    nnx.ConvTranspose: _Reader.conv_transpose,
    nnx.BatchNorm: _Reader.batchnorm,
}


def _is_container(module: nn.Module) -> bool:
    """A module that is read through (its calls are the layers): the user's own, nn.Sequential."""
    return isinstance(module, nn.Sequential) or not type(module).__module__.startswith("flax.")


def _inference_kwargs(module: nn.Module) -> dict[str, Any]:
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return {}
    return {name: value for name, value in INFERENCE_FLAGS.items() if name in params}


def _trace(module: nn.Module, shape: Shape) -> tuple[Any, list[_Call], Shape, dict[str, Any]]:
    """``(closed jaxpr, leaf calls, per-sample output shape, call kwargs)`` of one inference call."""
    kwargs = _inference_kwargs(module)
    x, key = jnp.zeros((BATCH, *shape), jnp.float32), jax.random.PRNGKey(0)
    try:
        # a dropout rng too, so that an nn.Dropout is read (and refused by name), not an init error
        variables = module.init({"params": key, "dropout": key}, x, **kwargs)
    except Exception as exc:  # the user's own code: any error is theirs to see, with the shape tried
        raise PortError(
            f"{type(module).__name__}.init on zeros of shape {x.shape}: {type(exc).__name__}: {exc}"
        ) from exc
    calls: list[_Call] = []

    def interceptor(next_fun: Callable[..., Any], args: Any, kw: Any, context: Any) -> Any:
        target = context.module
        if context.method_name != "__call__" or _is_container(target):
            return next_fun(*args, **kw)
        return record_leaf(calls, target, next_fun, args, kw)

    def run(x: jax.Array) -> jax.Array:
        with nn.intercept_methods(interceptor):
            y, _ = module.apply(variables, x, mutable=["batch_stats"], rngs={"dropout": key}, **kwargs)
        return y

    closed = jax.make_jaxpr(run)(x)
    out = closed.jaxpr.outvars[0].aval.shape
    return closed, calls, tuple(out[1:]), kwargs


def _shape(var: Any) -> Shape:
    return tuple(int(d) for d in var.aval.shape[1:])


def layers_of(module: nn.Module, input_shape: Shape | None = None) -> ReadNetwork:
    """The spec layers of a linen ``module`` on inputs of ``input_shape`` per sample (required:
    a linen module does not know it), with notes on every default made explicit."""
    if input_shape is None:
        raise PortError(
            f"{type(module).__name__}: a Flax module does not know its input shape; give it (the latent size)"
        )
    shape = tuple(int(d) for d in input_shape)
    reader = _Reader()
    if isinstance(module, nnx.Module):
        from .introspect_nnx import trace  # NNX modules are called, not applied: a trace of their own

        closed, calls, out_shape, reader.notes = trace(module, shape)
    else:
        closed, calls, out_shape, kwargs = _trace(module, shape)
        if kwargs:
            reader.notes.append(f"called with {kwargs} (inference: BatchNorm on its running averages)")
    jaxpr = closed.jaxpr
    current = jaxpr.invars[0]
    spec_shape: Shape = shape
    leaf_eqns: dict[int, list[Any]] = {}
    marks = 0
    for eqn in jaxpr.eqns:
        j = leaf_of(eqn)
        if j is not None:
            leaf_eqns.setdefault(j, []).append(eqn)
            continue
        done = len(reader.layers)
        if op_name(eqn) == MARK:
            current = _finish_leaf(reader, calls[marks], leaf_eqns.get(marks, []), current, eqn, jaxpr, spec_shape)
            marks += 1
        else:
            inputs = [v for v in eqn.invars if not hasattr(v, "val")]
            reader.where, reader.index = ("", f"jax op {op_name(eqn)}"), len(reader.layers)
            if inputs != [current] or len(eqn.outvars) != 1:
                raise reader.fail("does not take the previous layer's output alone: the spec is one chain of layers")
            reader.op(eqn, _shape(current))
            current = eqn.outvars[0]
        spec_shape = _infer(reader, done, spec_shape, _shape(current))
    if jaxpr.outvars[0] is not current:
        raise PortError(f"{WHERE}: its output is not the last layer's: the spec is one chain of layers")
    return ReadNetwork(tuple(reader.layers), shape, out_shape, reader.notes)


def _finish_leaf(
    reader: _Reader, call: _Call, eqns: list[Any], current: Any, marker: Any, jaxpr: Any, shape: Shape
) -> Any:
    """Reads one leaf call; its equations must take the chain's value (and constants) only."""
    produced = {id(v) for e in eqns for v in e.outvars}
    constants = {id(v) for v in jaxpr.constvars}
    outside = {id(v): v for e in eqns for v in e.invars if not hasattr(v, "val") and id(v) not in produced | constants}
    reader.leaf(call)
    if list(outside.values()) != [current]:
        raise reader.fail("does not take the previous layer's output alone: the spec is one chain of layers")
    if call.in_shape != shape:
        raise PortError(f"{WHERE}: layer {len(reader.layers) - 1} takes {call.in_shape}, the spec read makes {shape}")
    return marker.outvars[0]


def _infer(reader: _Reader, done: int, shape: Shape, actual: Shape) -> Shape:
    """The spec's own shape inference over the layers read from ``done`` on, checked against the
    shape the trace has there: a misread layer shows as a different shape at once."""
    for layer in reader.layers[done:]:
        try:
            shape = layer.output_shape(shape)
        except SpecError as exc:
            raise PortError(
                f"{WHERE}: spec layer {reader.layers.index(layer)} {layer.describe()} on {shape}: {exc}"
            ) from None
    if shape != actual:
        raise PortError(
            f"{WHERE}: the spec read makes {shape} after layer {len(reader.layers) - 1}, the module {actual}"
        )
    return shape
