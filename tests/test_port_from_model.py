"""``spec-from``, ``port --model``, then ``sample``: a user's own torch GAN ported with no spec
written by hand, verified against the user's model, and a wrong spec caught at its layer.

The user's code is the PyTorch DCGAN tutorial's ``Generator`` class in a file of its own, with
trained-looking BatchNorm statistics, saved with ``torch.save(netG.state_dict())``; every
expected value is that model's own output in eval mode. Commands run as the README tells them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_backend
from harness import user_module
from typer.testing import CliRunner

from gan_backends.cli import app

runner = CliRunner()
#: One xdist worker takes the module: its module-scoped files are made once.
pytestmark = pytest.mark.xdist_group("port-from-model")

USER_CODE = '''
import numpy as np
import torch
from torch import nn

nz, ngf = 16, 4


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


def trained():
    """A generator as training leaves it: BatchNorm statistics far from (0, 1)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    netG = Generator()
    with torch.no_grad():
        for m in netG.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
                m.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.5, c).astype(np.float32)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.05, 0.2, c).astype(np.float32)))
    return netG.eval()
'''


def _invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> dict:
    require_backend("torch")
    import torch

    folder = tmp_path_factory.mktemp("user")
    module = user_module(folder / "models.py", USER_CODE, "user_models_for_test")
    netG = module.trained()
    torch.save(netG.state_dict(), folder / "netG.pth")
    z = np.random.default_rng(1).standard_normal((5, 16, 1, 1)).astype(np.float32)
    np.save(folder / "z.npy", z)
    with torch.no_grad():
        images = netG(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()
    return {"folder": folder, "images": images, "model": f"{folder / 'models.py'}:trained"}


def test_spec_from_then_port_with_the_model_then_sample_is_the_users_generator(user, tmp_path):
    require_backend("jax")
    folder = user["folder"]
    text = _invoke("spec-from", user["model"], "--out", tmp_path / "spec.json")
    assert "input (N, 16, 1, 1) as the DCGAN tutorial draws it" in text and "discriminator: none given" in text
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert spec["generator"][2] == {"type": "BatchNorm", "momentum": 0.1, "eps": 1e-05, "running_var": "unbiased"}

    out = _invoke("port", folder / "netG.pth", "--model", user["model"], "--to", "jax", "--out", tmp_path / "g.msgpack")
    assert "max |your torch model - flax|" in out and "verified: the conversion and the spec" in out
    samples = tmp_path / "x.npy"
    _invoke("sample", tmp_path / "g.msgpack", "--spec", tmp_path / "spec.json", "--backend", "jax",
            "--noise", folder / "z.npy", "--out", samples)  # fmt: skip
    np.testing.assert_allclose(np.load(samples), user["images"], rtol=0, atol=1e-5)


def test_a_wrong_spec_passes_the_conversion_check_but_not_the_users_model(user, tmp_path):
    """BatchNorm eps 1e-3 (Keras') written for torch's 1e-5: the conversion alone agrees with
    itself; the user's model names generator layer 2."""
    folder = user["folder"]
    _invoke("spec-from", user["model"], "--out", tmp_path / "spec.json")
    data = json.loads((tmp_path / "spec.json").read_text())
    data["generator"][2]["eps"] = 1e-3
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    blind = _invoke(
        "port", folder / "netG.pth", "--spec", wrong, "--to", "safetensors", "--out", tmp_path / "a.safetensors"
    )
    assert "not the spec itself: give --model" in blind
    result = runner.invoke(
        app,
        ["port", str(folder / "netG.pth"), "--spec", str(wrong), "--model", user["model"], "--to", "safetensors",
         "--out", str(tmp_path / "b.safetensors")],
    )  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "first difference: generator layer 2 BatchNorm(momentum=0.1, eps=0.001" in text, text
    assert "is the first to differ from your model" in text and "(the layers before agree)" in text
    # there, (x - m) / sqrt(v + eps) moves by 1 - sqrt((v + 1e-5) / (v + 1e-3)): 2.5e-3 to 1e-2 of
    # its scale for the running variances v in [0.05, 0.2] of the fixture
    error = float(text.split("differ from your model: ")[1].split(" ")[0])
    assert 1e-3 <= error <= 2e-2, error
    assert "the converted model is not your model" in text


def test_a_keras_sequential_ports_to_torch_and_jax_and_samples_as_itself(tmp_path):
    """The TensorFlow DCGAN tutorial's generator (16×16), default arguments, saved with
    ``model.save('g.keras')`` and ``save_weights``: one command per target with no spec written
    by hand, and ``sample`` there draws the Keras model's own images (training=False)."""
    require_backend("tensorflow")
    require_backend("jax")
    import keras
    from test_spec_from_keras_flax import LATENT, _keras_statistics, tutorial_generator

    model = tutorial_generator(keras)
    _keras_statistics(keras, model, np.random.default_rng(4))
    model.save(tmp_path / "g.keras")
    model.save_weights(tmp_path / "g.weights.h5")
    z = np.random.default_rng(5).standard_normal((4, LATENT)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    expected = np.asarray(model(z, training=False))

    text = _invoke("spec-from", tmp_path / "g.keras", "--out", tmp_path / "spec.json")
    assert "(Keras' defaults)" in text
    for to, name in (("torch", "g.pth"), ("jax", "g.msgpack")):
        out = _invoke("port", tmp_path / "g.weights.h5", "--model", tmp_path / "g.keras", "--to", to,
                      "--out", tmp_path / name)  # fmt: skip
        assert "agreement: generator" in out
        samples = tmp_path / f"{to}.npy"
        _invoke("sample", tmp_path / name, "--spec", tmp_path / "spec.json", "--backend", to,
                "--noise", tmp_path / "z.npy", "--out", samples)  # fmt: skip
        np.testing.assert_allclose(np.load(samples), expected, rtol=0, atol=1e-5)


FLAX_CODE = """
import flax.linen as nn


class Generator(nn.Module):
    @nn.compact
    def __call__(self, z, train: bool = True):
        x = nn.Dense(4 * 4 * 8, use_bias=False)(z)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.leaky_relu(x, 0.2)
        x = x.reshape((x.shape[0], 4, 4, 8))
        x = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        x = nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME")(x)
        return nn.tanh(x)
"""


def test_a_flax_module_saved_with_to_bytes_ports_to_torch_and_samples_as_itself(tmp_path):
    """A linen generator, its variables (BatchNorm statistics away from (0, 1)) saved with
    ``flax.serialization.to_bytes``: one ``port --model`` command, then ``sample`` in torch."""
    require_backend("jax")
    import jax
    from flax import serialization

    module = user_module(tmp_path / "flax_models.py", FLAX_CODE, "flax_models_for_test")
    G, rng = module.Generator(), np.random.default_rng(6)
    z = rng.standard_normal((4, 16)).astype(np.float32)
    variables = jax.tree_util.tree_map(np.asarray, G.init(jax.random.PRNGKey(0), z, train=False))
    for stats in variables["batch_stats"].values():
        stats["mean"] = rng.normal(0, 0.5, stats["mean"].shape).astype(np.float32)
        stats["var"] = rng.uniform(0.3, 2.0, stats["var"].shape).astype(np.float32)
    (tmp_path / "g.msgpack").write_bytes(serialization.to_bytes(variables))
    np.save(tmp_path / "z.npy", z)
    expected = np.asarray(G.apply(variables, z, train=False))

    model = ["--model", f"{tmp_path / 'flax_models.py'}:Generator", "--latent-dim", "16"]
    _invoke("spec-from", *model[1:2], "--latent-dim", "16", "--out", tmp_path / "spec.json")
    out = _invoke("port", tmp_path / "g.msgpack", *model, "--to", "torch", "--out", tmp_path / "g.pth")
    assert "not run beside the port" in out
    _invoke("sample", tmp_path / "g.pth", "--spec", tmp_path / "spec.json", "--backend", "torch",
            "--noise", tmp_path / "z.npy", "--out", tmp_path / "x.npy")  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), expected, rtol=0, atol=1e-5)
