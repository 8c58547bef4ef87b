"""The spec read from a Keras model: each layer's config, every Keras default made explicit.

A ``keras.Sequential``, or a functional ``keras.Model`` whose layers form one chain (each layer
fed by the one before it), is read layer by layer from ``layer.get_config()``: the config holds
every argument, defaults included, so nothing is guessed from the layer's class. What the spec
holds in other words is converted and noted (Keras' BatchNorm momentum 0.99 is the weight of
the running value: the spec's 0.01; its variance is stored biased); an ``activation=`` inside
a ``Dense`` or convolution becomes the spec's activation layer after it. Nested Sequential or
functional models are read in place. A subclassed model's ``call`` is Python the configs do not
describe, so it is refused, as is every layer or option the spec cannot express (``Dropout``, a dilation, groups,
channels-first data, a BatchNorm without its scale or centre, a capped ReLU), named with its
position and class. ``UpSampling2D``, ``AveragePooling2D`` and ``SpectralNormalization`` (of a
``Dense`` or ``Conv2D``: that layer with the spec's ``spectral_norm``) are read by
:mod:`.introspect_resample`.

``load_model`` opens a whole ``.keras`` archive with ``safe_mode=True``: a deserialised lambda
is never run.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as in .checkpoint: TF's C++ log drowns the output

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402

from ...port.native import PortError  # noqa: E402
from ...port.spec_from import NotExpressible, ReadNetwork, not_expressible  # noqa: E402
from ...spec import (  # noqa: E402
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Flatten,
    Layer,
    LeakyReLU,
    ReLU,
    Reshape,
    Shape,
    Sigmoid,
    SpecError,
    Tanh,
)
from .introspect_resample import READERS as RESAMPLE_READERS  # noqa: E402

WHERE = "keras model"

#: Keras' activation names (as ``get_config`` writes them) that the spec has a layer for.
#: ``leaky_relu`` as a function defaults to slope 0.2 (``keras.activations.leaky_relu``),
#: unlike the ``LeakyReLU`` layer's 0.3.
ACTIVATIONS: dict[str, Callable[[], Layer] | None] = {
    "linear": None,
    "relu": ReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "leaky_relu": lambda: LeakyReLU(slope=0.2),
}


def load_model(path: str | Path) -> keras.Model:
    """A whole saved model (``.keras``), its lambdas refused (``safe_mode=True``)."""
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError for a bad archive
        raise PortError(f"{path}: not a Keras model this project can open ({type(exc).__name__}: {exc})") from exc


def spec_momentum(momentum: float) -> float:
    """Keras' momentum (weight of the running value) as the spec's weight of the new batch,
    to 12 digits: ``1 - 0.99`` is 0.010000000000000009 in binary, the 9 is no one's intent."""
    return float(f"{1.0 - momentum:.12g}")


class _Reader:
    """The walk over one model's layers: the spec layers so far, their notes, and positions."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.notes: list[str] = []

    def fail(self, index: int, layer: Any, reason: str) -> NotExpressible:
        return not_expressible(WHERE, index, type(layer).__name__, reason)

    def note(self, index: int, layer: Any, text: str) -> None:
        self.notes.append(f"layer {index} {type(layer).__name__} {layer.name!r}: {text}")

    def activation(self, index: int, layer: Any, name: Any, inside: bool) -> None:
        """``activation=name`` (inside a Dense or convolution, or an ``Activation`` layer)."""
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise self.fail(index, layer, f"activation {name!r}: the spec has relu, leaky_relu, tanh and sigmoid")
        make = ACTIVATIONS[name]
        if make is None:
            return
        self.layers.append(make())
        if inside:
            self.note(index, layer, f"activation={name!r} -> a separate {self.layers[-1].describe()} after it")
        if name == "leaky_relu":
            self.note(index, layer, "leaky_relu as an activation function: slope 0.2 (keras.activations' default)")

    def read(self, index: int, layer: Any) -> None:
        config = layer.get_config()
        kind = type(layer).__name__
        reader = _READERS.get(kind)
        if reader is None:
            raise self.fail(index, layer, f"the spec has no {kind} layer; it has {', '.join(_SUPPORTED)}")
        dtype = getattr(layer, "dtype_policy", None)
        if dtype is not None and getattr(dtype, "compute_dtype", "float32") not in ("float32", "float64"):
            raise self.fail(index, layer, f"dtype policy {dtype.name!r}: the spec computes in float32 or float64")
        reader(self, index, layer, config)


def _square(reader: _Reader, index: int, layer: Any, config: dict, key: str) -> int:
    value = tuple(config[key]) if isinstance(config[key], (list, tuple)) else (config[key],) * 2
    if len(value) != 2 or value[0] != value[1]:
        raise reader.fail(index, layer, f"{key}={value}: the spec's convolutions are square")
    return int(value[0])


def _conv_checks(reader: _Reader, index: int, layer: Any, config: dict) -> tuple[int, int, str]:
    if config.get("data_format", "channels_last") != "channels_last":
        raise reader.fail(index, layer, f"data_format={config['data_format']!r}: the spec is channels-last")
    if _square(reader, index, layer, config, "dilation_rate") != 1:
        raise reader.fail(index, layer, f"dilation_rate={config['dilation_rate']}: the spec has no dilation")
    if config.get("groups", 1) != 1:
        raise reader.fail(index, layer, f"groups={config['groups']}: the spec has no grouped convolution")
    if config["padding"] not in ("same", "valid"):
        raise reader.fail(index, layer, f"padding={config['padding']!r}: the spec has 'same' and 'valid'")
    return (
        _square(reader, index, layer, config, "kernel_size"),
        _square(reader, index, layer, config, "strides"),
        config["padding"],
    )


def _dense(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    reader.layers.append(Dense(units=int(config["units"]), use_bias=bool(config["use_bias"])))
    reader.activation(index, layer, config["activation"], inside=True)


def _conv2d(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    kernel, stride, padding = _conv_checks(reader, index, layer, config)
    reader.layers.append(
        Conv2D(
            filters=int(config["filters"]),
            kernel=kernel,
            stride=stride,
            padding=padding,
            use_bias=bool(config["use_bias"]),
        )
    )
    reader.activation(index, layer, config["activation"], inside=True)


def _conv2d_transpose(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    kernel, stride, padding = _conv_checks(reader, index, layer, config)
    if config.get("output_padding") is not None:
        # Keras' output_padding fixes the output size of 'same'/'valid' its own way; the spec's
        # output_padding goes with torch's integer padding only: refused rather than re-derived.
        raise reader.fail(
            index, layer, f"output_padding={config['output_padding']}: the spec's goes with an int padding"
        )
    layer_ = ConvTranspose2D(
        filters=int(config["filters"]), kernel=kernel, stride=stride, padding=padding, use_bias=bool(config["use_bias"])
    )
    reader.layers.append(layer_)
    reader.activation(index, layer, config["activation"], inside=True)


def _batchnorm(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    axis = config["axis"]
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    rank = len(layer.input.shape) if _has_input(layer) else None
    if axis != -1 and not (rank is not None and axis == rank - 1):
        raise reader.fail(index, layer, f"axis={config['axis']}: the spec normalises the last (channel) axis")
    if not (config["center"] and config["scale"]):
        raise reader.fail(index, layer, "center=False or scale=False: the spec's BatchNorm has both beta and gamma")
    if config.get("renorm") or config.get("synchronized"):
        raise reader.fail(index, layer, "renorm or synchronized BatchNorm: the spec's is plain batch normalisation")
    keras_momentum, eps = float(config["momentum"]), float(config["epsilon"])
    momentum = spec_momentum(keras_momentum)
    bn = BatchNorm(
        momentum=momentum,
        eps=eps,
        running_var="biased",
        # a Keras momentum under 0.5 is rare but meant: say so, or the spec takes it for a slip
        momentum_convention="torch" if momentum > 0.5 else None,
    )
    reader.layers.append(bn)
    defaults = " (Keras' defaults)" if (keras_momentum, eps) == (0.99, 1e-3) else ""
    reader.note(
        index,
        layer,
        f"momentum {keras_momentum:g}, epsilon {eps:g}{defaults} -> BatchNorm(momentum={momentum:g}, eps={eps:g}); "
        "running variance stored biased, as Keras stores it",
    )


def _has_input(layer: Any) -> bool:
    try:
        layer.input  # noqa: B018 - raises on a layer that was never called
        return True
    except (AttributeError, ValueError):
        return False


def _leaky_relu(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    # Keras 3 names it negative_slope (default 0.3); Keras 2 (tf_keras) alpha (default 0.3).
    slope = config.get("negative_slope", config.get("alpha"))
    reader.layers.append(LeakyReLU(slope=float(slope)))
    reader.note(index, layer, f"slope {slope:g}" + (" (Keras' default)" if slope == 0.3 else ""))


def _relu(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    if config.get("max_value") is not None or config.get("threshold", 0.0) != 0.0:
        raise reader.fail(
            index,
            layer,
            f"max_value={config.get('max_value')}, threshold={config.get('threshold')}: the spec's ReLU is max(x, 0)",
        )
    slope = float(config.get("negative_slope", 0.0))
    reader.layers.append(ReLU() if slope == 0.0 else LeakyReLU(slope=slope))


def _activation(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    reader.activation(index, layer, config["activation"], inside=False)


def _reshape(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    shape = tuple(config["target_shape"])
    if any(d is None or d == -1 for d in shape):
        if not _has_input(layer):
            raise reader.fail(index, layer, f"target_shape {shape} with an unknown size and no known input")
        shape = tuple(int(d) for d in layer.output.shape[1:])
        reader.note(index, layer, f"target_shape {config['target_shape']} resolved to {shape}")
    reader.layers.append(Reshape(shape=shape))


def _flatten(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    if config.get("data_format") not in (None, "channels_last"):
        raise reader.fail(index, layer, "data_format='channels_first' flattens in channels-first order")
    reader.layers.append(Flatten())


def _skip(reader: _Reader, index: int, layer: Any, config: dict) -> None:
    return


def _refuse(reason: str) -> Callable[[_Reader, int, Any, dict], None]:
    def refuse(reader: _Reader, index: int, layer: Any, config: dict) -> None:
        raise reader.fail(index, layer, reason)

    return refuse


_READERS: dict[str, Callable[[_Reader, int, Any, dict], None]] = {
    "Dense": _dense,
    "Conv2D": _conv2d,
    "Conv2DTranspose": _conv2d_transpose,
    "BatchNormalization": _batchnorm,
    "LeakyReLU": _leaky_relu,
    "ReLU": _relu,
    "Activation": _activation,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "InputLayer": _skip,
    # Dropout is the identity in inference, but training differs and the spec cannot say so:
    # accepting it would port a D whose training no longer matches the user's.
    "Dropout": _refuse("dropout: the spec has no dropout (identity only in inference); remove it or port without D"),
    "SpatialDropout2D": _refuse("dropout: the spec has no dropout"),
    # UpSampling2D, AveragePooling2D, GlobalSumPooling2D; SpectralNormalization of a Dense or Conv2D
    **RESAMPLE_READERS,
}
_REFUSED = ("InputLayer", "Dropout", "SpatialDropout2D", "GlobalSumPooling2D")
_SUPPORTED = [k for k in _READERS if k not in _REFUSED]


def _chain(model: keras.Model) -> list[Any]:
    """The model's layers in call order, nested models opened; a graph that is not one chain
    (a branch, a skip connection, several inputs) or a subclassed model is refused."""
    # by class name, not isinstance: a Keras 2 (tf_keras) model is read by the same configs
    kinds = {cls.__name__ for cls in type(model).__mro__}
    if "Sequential" in kinds:
        layers = list(model.layers)
    elif "Functional" in kinds or getattr(model, "_is_graph_network", False):
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise PortError(
                f"{model.name}: {len(model.inputs)} inputs, {len(model.outputs)} outputs; a spec net has one of each"
            )
        layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        previous = model.inputs[0]
        for i, layer in enumerate(layers):
            if len(layer._inbound_nodes) != 1 or layer.input is not previous:
                raise not_expressible(
                    WHERE, i, type(layer).__name__, "not fed by the layer before it: the spec is one chain of layers"
                )
            previous = layer.output
        if previous is not model.outputs[0]:
            raise PortError(f"{model.name}: the output is not the last layer's; the spec is one chain of layers")
    else:
        raise PortError(
            f"{type(model).__name__}: a subclassed keras.Model's call() is code its configs do not describe; "
            "build it as a keras.Sequential or a functional model"
        )
    out: list[Any] = []
    for layer in layers:
        out += _chain(layer) if _is_model(layer) else [layer]
    return out


def _is_model(layer: Any) -> bool:
    """A nested model (Keras 3's or Keras 2's), read in place."""
    return any(cls.__name__ == "Model" for cls in type(layer).__mro__)


def _model_input_shape(model: keras.Model, input_shape: Shape | None) -> Shape:
    try:
        built = model.input_shape
    except (AttributeError, ValueError):
        built = None
    if built is not None and not isinstance(built, list):
        shape = tuple(built[1:])
        if all(isinstance(d, int) for d in shape):
            if input_shape is not None and tuple(input_shape) != shape:
                raise PortError(f"{model.name} takes {shape} per sample, not the {tuple(input_shape)} given")
            return shape
    if input_shape is None:
        raise PortError(f"{model.name} is not built, so its input shape is unknown: give it (e.g. the latent size)")
    model.build((None, *input_shape))
    return tuple(input_shape)


def layers_of(model: keras.Model, input_shape: Shape | None = None) -> ReadNetwork:
    """The spec layers of ``model`` with its input and output shapes and notes on every default
    made explicit; the output shape the spec infers is checked against Keras' own."""
    shape = _model_input_shape(model, input_shape)
    reader = _Reader()
    for index, layer in enumerate(_chain(model)):
        reader.read(index, layer)
    out: Shape = shape
    for i, layer in enumerate(reader.layers):
        try:
            out = layer.output_shape(out)
        except SpecError as exc:
            raise PortError(f"{WHERE}: spec layer {i} {layer.describe()} on {out}: {exc}") from None
    keras_out = tuple(model.compute_output_shape((None, *shape))[1:])
    if keras_out != out:
        raise PortError(f"{WHERE}: the spec read makes {out} per sample, Keras makes {keras_out}")
    return ReadNetwork(tuple(reader.layers), shape, out, reader.notes)


__all__ = ["ACTIVATIONS", "layers_of", "load_model"]
