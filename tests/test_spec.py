import json
import subprocess
import sys

import pytest

from gan_backends import Dense, Flatten, GANSpec, LeakyReLU, Reshape, SpecError, Tanh, get_preset
from gan_backends.presets import PRESETS, tutorial_adam


def small_spec(**changes) -> GANSpec:
    base = dict(
        name="t",
        data_shape=(4, 4, 1),
        latent_dim=3,
        generator=(Dense(units=16), Tanh(), Reshape(shape=(4, 4, 1))),
        discriminator=(Flatten(), Dense(units=5), LeakyReLU(slope=0.2), Dense(units=1)),
        g_optimizer=tutorial_adam(),
        d_optimizer=tutorial_adam(),
    )
    base.update(changes)
    return GANSpec(**base)


def test_mlp_preset_is_the_tutorial_gan():
    spec = get_preset("mlp")
    assert [layer.units for layer in spec.generator if isinstance(layer, Dense)] == [256, 512, 1024, 784]
    assert [layer.units for layer in spec.discriminator if isinstance(layer, Dense)] == [512, 256, 1]
    assert {layer.slope for layer in spec.generator + spec.discriminator if isinstance(layer, LeakyReLU)} == {0.2}
    assert isinstance(spec.generator[-1], Tanh)
    assert isinstance(spec.discriminator[-1], Dense)  # logits, no sigmoid
    for opt in (spec.g_optimizer, spec.d_optimizer):
        assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (2e-4, 0.5, 0.999, 1e-8)
    assert spec.latent_dim == 100 and spec.data_shape == (784,)


def test_mlp_preset_sizes_are_configurable():
    spec = get_preset("mlp", data_shape=(28, 28, 1), latent_dim=64, g_hidden=(128,), d_hidden=(64, 32))
    assert spec.layer_shapes("generator")[-1][1] == (28, 28, 1)
    assert spec.layer_shapes("discriminator")[-1][1] == (1,)


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(name):
    spec = get_preset(name)
    again = GANSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(again.to_json()) == json.loads(spec.to_json())


def test_shape_inference_layer_by_layer():
    shapes = small_spec().layer_shapes("discriminator")
    assert shapes == [((4, 4, 1), (16,)), ((16,), (5,)), ((5,), (5,)), ((5,), (1,))]


def test_bad_reshape_names_layer_and_shapes():
    with pytest.raises(SpecError) as err:
        small_spec(generator=(Dense(units=15), Tanh(), Reshape(shape=(4, 4, 1))))
    message = str(err.value)
    assert "generator layer 2" in message and "Reshape" in message
    assert "(15,)" in message and "(4, 4, 1)" in message


def test_dense_on_image_names_layer_and_shape():
    with pytest.raises(SpecError, match=r"discriminator layer 0 Dense.*\(4, 4, 1\).*Flatten"):
        small_spec(discriminator=(Dense(units=1),))


def test_generator_output_must_match_data_shape():
    with pytest.raises(SpecError, match=r"generator output shape \(16,\) does not match data_shape \(4, 4, 1\)"):
        small_spec(generator=(Dense(units=16),))


def test_discriminator_must_end_in_one_logit():
    with pytest.raises(SpecError, match=r"one logit.*\(5,\)"):
        small_spec(discriminator=(Flatten(), Dense(units=5)))


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"type": "Conv9D"}', "unknown layer type 'Conv9D'"),
        ('{"type": "Dense", "units": 0}', "Dense.units must be a positive integer"),
        ('{"type": "Dense", "units": 3, "width": 2}', "discriminator layer 0 Dense: unknown field 'width'"),
        ('{"type": "LeakyReLU", "slope": 1.5}', r"slope must lie in \[0, 1\)"),
        ('{"type": "LeakyReLU"}', "discriminator layer 0 LeakyReLU: missing field 'slope'"),  # no default
    ],
)
def test_bad_layer_json(text, match):
    data = get_preset("tiny").to_dict()
    data["discriminator"][0] = json.loads(text)
    with pytest.raises(SpecError, match=match):
        GANSpec.from_dict(data)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("loss", {"name": "wgan"}, "unknown loss 'wgan'"),
        ("loss", {"name": "minimax", "d_scale": 0}, "d_scale must be a positive number"),
        ("g_optimizer", {"lr": 1e-3, "beta1": 0.5, "beta2": 1.0, "eps": 1e-8}, r"betas must lie in \[0, 1\)"),
        ("numerics", {"dtype": "float16"}, "numerics.dtype"),
        ("latent_dim", -1, "latent_dim must be a positive integer"),
        ("colour", 3, "spec: unknown field 'colour'"),
    ],
)
def test_bad_spec_fields(field, value, match):
    data = get_preset("tiny").to_dict()
    data[field] = value
    with pytest.raises(SpecError, match=match):
        GANSpec.from_dict(data)


def test_spec_is_frozen():
    spec = get_preset("tiny")
    with pytest.raises(AttributeError):
        spec.latent_dim = 3  # type: ignore[misc]


def test_core_imports_no_framework():
    code = (
        "import sys, gan_backends as gb\n"
        "s = gb.get_preset('mlp'); gb.GANSpec.from_json(s.to_json()); gb.init_params(s)\n"
        "gb.available_backends()\n"
        "from gan_backends import cli, check\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'optax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_problem_is_named_at_once_with_its_place_and_the_field_meant():
    """Names from torch and Keras where the spec has its own, a misspelt type, a section's typo:
    one error lists them all, each with the layer's index and class and a "did you mean"."""
    data = get_preset("dcgan-small").to_dict()
    data["generator"][1] = {"type": "ConvTranspose2D", "filters": 16, "kernel_size": 4, "strides": 1, "bias": False}
    data["generator"][2] = {"type": "BatchNorm", "epsilon": 1e-3}
    data["discriminator"][1] = {"type": "LeakyReLu", "slope": 0.2}
    data["g_optimizer"]["learning_rate"] = 1e-3
    with pytest.raises(SpecError) as err:
        GANSpec.from_dict(data)
    message = str(err.value)
    assert message.startswith("4 problems in the spec:")
    for expected in (
        "generator layer 1 ConvTranspose2D: unknown field 'kernel_size' (did you mean 'kernel'?)",
        "unknown field 'strides' (did you mean 'stride'?)",
        "unknown field 'bias' (did you mean 'use_bias'?); missing field 'kernel' (its fields: filters, kernel",
        "generator layer 2 BatchNorm: unknown field 'epsilon' (did you mean 'eps'?)",
        "discriminator layer 1: unknown layer type 'LeakyReLu' (did you mean 'LeakyReLU'?)",
        "g_optimizer: unknown field 'learning_rate' (did you mean 'lr'?)",
    ):
        assert expected in message, message


def test_a_keras_batchnorm_momentum_is_refused_unless_its_convention_is_said():
    """Keras' momentum 0.99 keeps 0.99 of the running value: torch's 0.01. Written as torch's
    momentum it would make the statistics follow each batch; refused, with both ways out."""
    data = get_preset("dcgan-small").to_dict()
    data["generator"][2] = {"type": "BatchNorm", "momentum": 0.99, "eps": 1e-3}
    with pytest.raises(
        SpecError, match=r"generator layer 2 BatchNorm: BatchNorm.momentum 0.99 is the weight of the new"
    ):
        GANSpec.from_dict(data)
    data["generator"][2]["momentum_convention"] = "keras"
    spec = GANSpec.from_dict(data)
    assert spec.generator[2].momentum == pytest.approx(0.01, abs=1e-15)
    assert GANSpec.from_json(spec.to_json()) == spec  # stored in torch's form, said so: it reloads
    data["generator"][2] = {"type": "BatchNorm", "momentum": 0.9, "momentum_convention": "torch"}
    assert GANSpec.from_dict(data).generator[2].momentum == 0.9
    assert "momentum_convention" not in get_preset("dcgan-small").to_dict()["generator"][2]  # files unchanged
