"""Keras' resampling and pooling layers read into the spec's (for :mod:`.introspect`), and
Keras' ``SpectralNormalization`` refused with the reason.

``UpSampling2D(size, interpolation)``: ``'nearest'`` repeats each pixel, ``'bilinear'`` is
``tf.image.resize``'s half-pixel centres (the spec's ``align_corners=False``; Keras has no
``align_corners``). ``AveragePooling2D(pool_size, strides, padding)``: ``'valid'`` pads nothing;
``'same'`` pads TF's way and divides by the window's real pixels only, the spec's
``count_include_pad=False`` (torch counts the zeros by default). Each reader takes ``(reader,
index, layer, config)`` as :data:`.introspect._READERS` calls it.
"""

from __future__ import annotations

from typing import Any

from ...spec import AvgPool2D, GlobalSumPool, Upsample


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
    inner = config.get("layer", {}).get("class_name", "a layer")
    raise reader.fail(
        index,
        layer,
        f"SpectralNormalization({inner}): Keras writes W/σ into the kernel in training calls (its gradient has no σ "
        "term, the optimiser steps the normalised kernel) and applies the kernel as stored at inference, without σ; "
        "the spec's spectral_norm is torch's (the kernel kept, divided by σ = uᵀWv on every call), so Keras' layer "
        "cannot be expressed. Remove it, or build the model in torch with torch.nn.utils.spectral_norm",
    )


READERS = {
    "UpSampling2D": upsampling2d,
    "AveragePooling2D": average_pooling2d,
    "GlobalSumPooling2D": global_sum_pooling2d,
    "SpectralNormalization": spectral_normalization,
}
