"""Keras' resampling and pooling layers read into the spec's (for :mod:`.introspect`), and
Keras' ``SpectralNormalization`` of a ``Dense`` or ``Conv2D`` read as that layer with the spec's
``spectral_norm`` (anything else it wraps refused).

``UpSampling2D(size, interpolation)``: ``'nearest'`` repeats each pixel, ``'bilinear'`` is
``tf.image.resize``'s half-pixel centres (the spec's ``align_corners=False``; Keras has no
``align_corners``). ``AveragePooling2D(pool_size, strides, padding)``: ``'valid'`` pads nothing;
``'same'`` pads TF's way and divides by the window's real pixels only, the spec's
``count_include_pad=False`` (torch counts the zeros by default). Each reader takes ``(reader,
index, layer, config)`` as :data:`.introspect._READERS` calls it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from ...spec import AvgPool2D, GlobalSumPool, SpectralNormSpec, Upsample


def _pair(reader: Any, index: int, layer: Any, config: dict, key: str) -> int:
    value = tuple(config[key]) if isinstance(config[key], (list, tuple)) else (config[key],) * 2
    if len(value) != 2 or value[0] != value[1]:
        raise reader.fail(index, layer, f"{key}={value}: the spec's is one number for height and width")
    return int(value[0])


def _channels_last(reader: Any, index: int, layer: Any, config: dict) -> None:
    if config.get("data_format") not in (None, "channels_last"):
        raise reader.fail(index, layer, f"data_format={config['data_format']!r}: the spec is channels-last")


def upsampling2d(reader: Any, index: int, layer: Any, config: dict) -> None:
    _channels_last(reader, index, layer, config)
    factor = _pair(reader, index, layer, config, "size")
    method = config.get("interpolation", "nearest")
    if method not in ("nearest", "bilinear"):
        raise reader.fail(index, layer, f"interpolation={method!r}: the spec's Upsample has nearest and bilinear")
    reader.layers.append(Upsample(factor=factor, method=method, align_corners=False))
    if method == "bilinear":
        reader.note(index, layer, "bilinear: half-pixel centres (align_corners=False), tf.image.resize's")


def average_pooling2d(reader: Any, index: int, layer: Any, config: dict) -> None:
    _channels_last(reader, index, layer, config)
    pool = _pair(reader, index, layer, config, "pool_size")
    stride = pool if config.get("strides") is None else _pair(reader, index, layer, config, "strides")
    padding = config["padding"]
    if padding not in ("same", "valid"):
        raise reader.fail(index, layer, f"padding={padding!r}: Keras pools with 'same' or 'valid'")
    include = None if padding == "valid" else False
    reader.layers.append(AvgPool2D(pool=pool, stride=stride, padding=padding, count_include_pad=include))
    if padding == "same":
        reader.note(index, layer, "padding='same': the padded zeros are not counted (count_include_pad=False)")


def global_sum_pooling2d(reader: Any, index: int, layer: Any, config: dict) -> None:
    """This project's own ``GlobalSumPooling2D`` (:mod:`.checkpoint`), as the Keras model of a spec has it."""
    reader.layers.append(GlobalSumPool())


def spectral_normalization(reader: Any, index: int, layer: Any, config: dict) -> None:
    """``SpectralNormalization(Dense or Conv2D, power_iterations)``: the wrapped layer read as
    usual, with the spec's ``spectral_norm``. Keras' ``normalize`` is ``x / max(‖x‖, eps)`` with
    ``eps = keras.config.epsilon()`` (keras/src/ops/nn.py), torch's form, so that is the spec's
    eps. The port makes the spec's σ 1 on the kernel Keras stores (gan_backends.port.spectral_vectors),
    so the eval logits are Keras' own; training is where the two differ, and the note says how."""
    inner = getattr(layer, "layer", None)
    kind = type(inner).__name__
    if kind not in ("Dense", "Conv2D"):
        raise reader.fail(
            index, layer, f"SpectralNormalization({kind}): the spec's spectral norm is an option of Dense and Conv2D"
        )
    start = len(reader.layers)
    reader.read(index, inner)
    iterations, eps = int(config["power_iterations"]), float(keras.config.epsilon())
    sn = SpectralNormSpec(n_power_iterations=iterations, eps=eps)
    reader.layers[start] = dataclasses.replace(reader.layers[start], spectral_norm=sn)
    reader.note(
        index,
        layer,
        f"SpectralNormalization({kind}, power_iterations={iterations}), normalize's eps {eps:g} (keras.config."
        f"epsilon()) -> spectral_norm(n_power_iterations={iterations}, eps={eps:g}). The port's sn_v makes "
        "σ = uᵀWv = 1 on the stored kernel, which Keras' inference applies as is: the eval logits are Keras' own. "
        "Training continues under torch's semantics: the kernel is kept and divided by σ on every call, its "
        "gradient with the σ term, where Keras' training calls overwrote the kernel with W/σ and stepped it "
        "with the plain gradient",
    )


READERS = {
    "UpSampling2D": upsampling2d,
    "AveragePooling2D": average_pooling2d,
    "GlobalSumPooling2D": global_sum_pooling2d,
    "SpectralNormalization": spectral_normalization,
}
