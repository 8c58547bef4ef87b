"""The spec read from the user's own model, in its own framework, every default made explicit.

``gan-backends spec-from FILE.py:NAME`` (or a Keras ``.keras`` archive) writes the spec JSON of
the model a user already has, so that ``port`` needs no hand-written spec. Each framework
package's ``introspect`` part reads its own models (``layers_of(model, input_shape)``, a
:class:`ReadNetwork`): a torch ``nn.Module`` walked in call order, a Keras model's layer
configs, a Flax module's submodule calls. This module is framework-free: it finds the object,
asks the package whose ``model_modules`` own its class, and assembles the :class:`GANSpec`.

A layer or option the spec cannot express is a :class:`NotExpressible` naming its position and
class, never approximated. A generator alone (the usual published model) gets the stand-in
discriminator ``Flatten, Dense(1)``, said so in the notes: ``port`` and ``sample`` of a
generator never run it.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import REGISTRY, load_part
from ..spec import Dense, Flatten, GANSpec, Layer, Shape, Sigmoid, SpecError
from .native import PortError


class NotExpressible(PortError):
    """A layer or option of the user's model that the spec cannot express (named with its
    position and class)."""


def not_expressible(where: str, index: int, class_name: str, reason: str) -> NotExpressible:
    """``generator layer 3 (nn.Upsample): <reason>``: the one form every package raises."""
    return NotExpressible(f"{where} layer {index} ({class_name}): {reason}")


@dataclass
class ReadNetwork:
    """What a package's ``layers_of`` read from one model: the spec layers in call order, the
    per-sample input and output shapes (canonical, channels last), and notes saying which
    framework defaults were made explicit (``LeakyReLU() slope 0.3, Keras' default``)."""

    layers: tuple[Layer, ...]
    input_shape: Shape
    output_shape: Shape
    notes: list[str] = field(default_factory=list)


@dataclass
class ReadSpec:
    """A spec assembled from the user's models, the framework they came from, and notes."""

    spec: GANSpec
    framework: str
    notes: list[str]


def framework_of(model: Any) -> str:
    """The registry name of the package that reads ``model`` (by its class's top module)."""
    modules = {cls.__module__.split(".", 1)[0] for cls in type(model).__mro__}
    for name, entry in REGISTRY.items():
        if modules & set(entry.model_modules):
            return name
    raise SpecError(f"{type(model).__qualname__} is not a torch, Keras or Flax model this project reads")


def load_model(target: str) -> Any:
    """The model named by ``FILE.py:NAME`` (the module is run: it is the user's own code; a
    callable ``NAME`` that is not a model is called with no arguments, a builder function), or a
    whole saved model (``.keras``) loaded by the package that declares the extension."""
    path_text, _, name = target.rpartition(":")
    if not path_text.endswith(".py"):
        path_text, name = target, ""
    path = Path(path_text)
    for framework, entry in REGISTRY.items():
        if entry.model_files and path.name.lower().endswith(entry.model_files):
            if not path.is_file():
                raise SpecError(f"{path}: no such file")
            return load_part(framework, "introspect").load_model(path)
    if not name or path.suffix != ".py":
        raise SpecError(f"{target}: give FILE.py:NAME (a model or a function that builds one) or a saved .keras model")
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    module_name = f"_gan_backends_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclass-based modules (Flax) look themselves up here
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        found = [n for n in vars(module) if not n.startswith("_")]
        raise SpecError(f"{path} has no {name!r}; it defines {', '.join(found[:12])}")
    obj = getattr(module, name)
    try:
        framework_of(obj)
        return obj
    except SpecError:
        if callable(obj) and not isinstance(obj, type):
            return obj()
        if isinstance(obj, type):
            return obj()  # a model class with a no-argument constructor (the tutorials' Generator)
        raise


def read_network(model: Any, input_shape: Shape | None = None) -> tuple[str, ReadNetwork]:
    """``(framework, ReadNetwork)`` of one model by its package's ``introspect`` part."""
    framework = framework_of(model)
    return framework, load_part(framework, "introspect").layers_of(model, input_shape)


def spec_from_models(
    generator: Any,
    discriminator: Any | None = None,
    *,
    name: str = "ported",
    latent_dim: int | None = None,
    base: GANSpec | None = None,
) -> ReadSpec:
    """The spec of the user's ``generator`` (and ``discriminator``), their layers read in their
    framework; loss, optimisers and numerics from ``base`` (default: the DCGAN tutorial's,
    Adam(2e-4, 0.5, 0.999), non-saturating) as a model holds none of them."""
    from ..presets import get_preset

    base = base or get_preset("dcgan-small")
    framework, g = read_network(generator, (latent_dim,) if latent_dim else None)
    notes = [f"generator: {note}" for note in g.notes]
    if discriminator is None:
        d_layers: tuple[Layer, ...] = (Flatten(), Dense(units=1)) if len(g.output_shape) > 1 else (Dense(units=1),)
        notes.append("discriminator: none given; Flatten, Dense(1) stands in (port and sample of G never run it)")
    else:
        d_framework, d = read_network(discriminator, g.output_shape)
        if d_framework != framework:
            raise SpecError(f"the generator is a {framework} model and the discriminator a {d_framework} one")
        if d.input_shape != g.output_shape:
            raise SpecError(f"the discriminator takes {d.input_shape}, the generator makes {g.output_shape}")
        d_layers, d_notes = _as_logit_head(d.layers, d.output_shape)
        notes += [f"discriminator: {note}" for note in d.notes + d_notes]
    if len(g.input_shape) != 1:
        raise SpecError(f"the generator takes {g.input_shape} per sample; a spec's generator takes (latent_dim,)")
    spec = base.replace(
        name=name,
        latent_dim=g.input_shape[0],
        data_shape=g.output_shape,
        generator=g.layers,
        discriminator=d_layers,
    )
    return ReadSpec(spec, framework, notes)


def _as_logit_head(layers: tuple[Layer, ...], output_shape: Shape) -> tuple[tuple[Layer, ...], list[str]]:
    """A discriminator as the spec has it: one logit per sample. The tutorials end D in a
    ``Sigmoid`` (their loss takes probabilities) and a ``(1, 1, 1)`` map (``.view(-1)`` after):
    the sigmoid is left to the loss (the same model, in the stable logit form) and the map is
    flattened (a PatchGAN's ``(H, W, 1)`` map stays: the spec takes it as it is)."""
    notes = []
    if layers and isinstance(layers[-1], Sigmoid):
        layers = layers[:-1]
        notes.append("its final Sigmoid is left to the loss: the spec's D gives logits (discriminate prints logits)")
    if tuple(output_shape) == (1, 1, 1):
        layers = (*layers, Flatten())
        notes.append("its (1, 1, 1) output is flattened to one logit per sample, as the tutorials' .view(-1)")
    return layers, notes
