"""Spectrally normalised Dense and Conv2D as Keras layers, for the native Keras model of a spec
(:mod:`.checkpoint`: ``port --to keras``, ``sample``, ``discriminate``).

Not ``keras.layers.SpectralNormalization``: that one stores only ``vector_u``, writes ``W / σ``
into the wrapped layer's ``kernel`` in training calls and applies the kernel as stored at
inference (docs/framework-differences.md), so a torch ``spectral_norm`` checkpoint cannot be
expressed in it. These layers hold the spec's tensors as Keras variables, in the canonical
tree's order (``kernel``, ``bias``, then the non-trainable ``sn_u`` ``(out,)`` and ``sn_v``
``(fan_in,)`` in ``(kh, kw, in)`` order), so ``set_weights`` and ``save_weights`` carry them;
an inference call applies ``kernel / σ`` with ``σ = uᵀ W v`` from the stored vectors, as torch
does in eval mode (:mod:`gan_backends.spec.spectral`). They are inference layers: a training
call is refused (the TF backend trains the spec, power iteration included).

:func:`wrapper_tensors` reads a ``keras.layers.SpectralNormalization`` wrapper out of a Keras 3
weights file: Keras 3.15 files it as ``<wrapper>/layer/vars`` (the wrapped layer's kernel,
bias) and ``<wrapper>/vars`` (``0``: the same kernel again, the wrapper's ``self.kernel``;
``1``: ``vector_u`` ``(1, out)``), converted to the spec's tensors by
:func:`gan_backends.port.spectral_vectors.keras_vectors`.
"""

from __future__ import annotations

import re
from typing import Any

import keras
import numpy as np
from keras import ops

from ...port.native import PortError
from ...port.spectral_vectors import keras_vectors


def is_keras_wrapper(path: str) -> bool:
    """A weights-file group of a ``SpectralNormalization`` (named by class and counter)."""
    return re.fullmatch(r"spectral_normalization(_\d+)?", path.rsplit("/", 1)[-1]) is not None


def wrapper_tensors(
    path: str, own: list[np.ndarray], inner: list[np.ndarray]
) -> tuple[str, list[str], list[np.ndarray], list[str]]:
    """``(layer type, keys, arrays, roles)`` of one wrapper: the wrapped layer's kernel and bias,
    ``sn_u`` = ``vector_u`` and ``sn_v`` with ``uᵀWv = 1``, so the spec's inference applies the
    kernel as stored, as Keras' does (its training calls already divided it by σ)."""
    if not inner or len(inner) > 2 or len(own) != 2:
        shapes = [a.shape for a in own], [a.shape for a in inner]
        raise PortError(f"keras layer {path}: SpectralNormalization variables {shapes} are not a kernel, bias, u")
    kernel, vector_u = inner[0], own[1]
    if kernel.ndim not in (2, 4):
        raise PortError(f"keras layer {path}: a SpectralNormalization of a {kernel.ndim}-D kernel; Dense or Conv2D")
    if own[0].shape != kernel.shape or not np.array_equal(own[0], kernel):
        raise PortError(f"keras layer {path}: the wrapper's kernel is not its layer's kernel")
    u, v = keras_vectors(kernel, vector_u, f"keras layer {path}")
    keys = [f"layer/vars/{i}" for i in range(len(inner))] + ["vars/1", "vars/1 (v: uᵀWv = 1)"]
    roles = ["kernel", "bias"][: len(inner)] + ["sn_u", "sn_v"]
    return ("Dense" if kernel.ndim == 2 else "Conv2D"), keys, [*inner, u, v], roles


class _SpectralNormKernel(keras.layers.Layer):
    """The variables and σ shared by :class:`SpectralNormDense` and :class:`SpectralNormConv2D`."""

    def __init__(self, out: int, use_bias: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.out, self.use_bias = out, use_bias

    def _kernel_shape(self, input_shape: Any) -> tuple[int, ...]:
        raise NotImplementedError

    def build(self, input_shape: Any) -> None:
        shape = self._kernel_shape(input_shape)
        self.kernel = self.add_weight(shape=shape, initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(self.out,), initializer="zeros", name="bias") if self.use_bias else None
        fan_in = 1
        for n in shape[:-1]:
            fan_in *= n
        self.sn_u = self.add_weight(shape=(self.out,), initializer="zeros", trainable=False, name="sn_u")
        self.sn_v = self.add_weight(shape=(fan_in,), initializer="zeros", trainable=False, name="sn_v")

    def normalised_kernel(self, training: Any) -> Any:
        if training:
            raise NotImplementedError(
                f"{type(self).__name__} runs inference only (σ from the stored u, v); train the spec with the "
                "tensorflow backend, which iterates and stores u, v as torch's spectral_norm does"
            )
        w_v = ops.matmul(self.sn_v, ops.reshape(self.kernel, (-1, self.out)))  # W v, W = kernel.reshape(-1, out).T
        return self.kernel / ops.sum(self.sn_u * w_v)

    def _bias(self, y: Any) -> Any:
        return y if self.bias is None else y + self.bias

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="gan_backends")
class SpectralNormDense(_SpectralNormKernel):
    """``x @ (kernel / σ) + bias``."""

    def __init__(self, units: int, use_bias: bool = True, **kwargs: Any):
        super().__init__(units, use_bias, **kwargs)

    def _kernel_shape(self, input_shape: Any) -> tuple[int, ...]:
        return (int(input_shape[-1]), self.out)

    def call(self, x: Any, training: Any = None) -> Any:
        return self._bias(ops.matmul(x, self.normalised_kernel(training)))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], self.out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.out}


@keras.saving.register_keras_serializable(package="gan_backends")
class SpectralNormConv2D(_SpectralNormKernel):
    """``conv(x, kernel / σ) + bias``, channels last, ``padding`` ``'valid'`` or ``'same'``
    (an integer padding is a ``ZeroPadding2D`` before it, as for the plain ``Conv2D``)."""

    def __init__(self, filters: int, kernel_size: int, strides: int, padding: str, use_bias: bool = True, **kw: Any):
        super().__init__(filters, use_bias, **kw)
        self.kernel_size, self.strides, self.padding = kernel_size, strides, padding

    def _kernel_shape(self, input_shape: Any) -> tuple[int, ...]:
        return (self.kernel_size, self.kernel_size, int(input_shape[-1]), self.out)

    def call(self, x: Any, training: Any = None) -> Any:
        return self._bias(ops.conv(x, self.normalised_kernel(training), self.strides, self.padding))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return keras.layers.Conv2D(self.out, self.kernel_size, self.strides, self.padding).compute_output_shape(
            input_shape
        )

    def get_config(self) -> dict[str, Any]:
        config = {"filters": self.out, "kernel_size": self.kernel_size, "strides": self.strides}
        return {**super().get_config(), **config, "padding": self.padding}
