"""The spec read from a user's own ``nn.Module``: layers in call order, torch's defaults explicit.

The models are written as the PyTorch tutorials write them (an ``nn.Sequential`` MLP, the DCGAN
tutorial's ``Generator``/``Discriminator`` classes with a ``main`` Sequential, a functional
forward). Each read spec is held two ways: layer by layer against values derived by hand from
the torch modules' documented arguments, and — independently of the reading — the spec built in
the float64 NumPy reference with the model's own weights (its ``state_dict`` through the port)
gives the model's own output in eval mode.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend_module

require_backend_module("torch")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from gan_backends.backends.numpy.network import Network  # noqa: E402
from gan_backends.port import read_native, to_canonical  # noqa: E402
from gan_backends.port.spec_from import NotExpressible, spec_from_models  # noqa: E402
from gan_backends.spec import (  # noqa: E402
    BatchNorm,
    ConvTranspose2D,
    Dense,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    SpecError,
    Tanh,
)

NZ, NGF, NDF = 16, 4, 4


class Generator(nn.Module):
    """The PyTorch DCGAN tutorial's generator at 32×32×1 (its ``main`` Sequential, its forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 4, 4, 1, 0, bias=False),
            nn.BatchNorm2d(NGF * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(NGF * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False),
            nn.BatchNorm2d(NGF),
            nn.ReLU(True),
            nn.ConvTranspose2d(NGF, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, NDF, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(NDF * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(NDF * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 4, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input)


class FunctionalG(nn.Module):
    """A forward written with functional calls, as many repositories do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 12)

    def forward(self, z):
        return torch.tanh(self.fc2(F.leaky_relu(self.fc1(z), 0.2)))


def _trained_statistics(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm parameters and running statistics, then eval mode."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
                m.bias.copy_(torch.from_numpy(rng.normal(0, 0.3, c).astype(np.float32)))
                m.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.5, c).astype(np.float32)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, c).astype(np.float32)))
    return model.eval()


def _reference_out(spec, net: str, model: nn.Module, path, x: np.ndarray) -> np.ndarray:
    torch.save(model.state_dict(), path)
    params, buffers = to_canonical(read_native(path), spec, networks=(net,))
    return Network(spec, net).forward({**params, **buffers}, x.astype(np.float64))[0]


def test_the_dcgan_tutorial_classes_read_as_their_spec_and_compute_what_they_compute(tmp_path):
    torch.manual_seed(0)
    G, D = _trained_statistics(Generator(), 1), _trained_statistics(Discriminator(), 2)
    read = spec_from_models(G, D)
    spec = read.spec
    assert read.framework == "torch" and spec.latent_dim == NZ and spec.data_shape == (32, 32, 1)
    assert spec.generator[0] == Reshape(shape=(1, 1, NZ))  # the tutorial's (N, nz, 1, 1) noise
    assert spec.generator[1] == ConvTranspose2D(filters=16, kernel=4, stride=1, padding=0, use_bias=False)
    assert spec.generator[2] == BatchNorm(momentum=0.1, eps=1e-5, running_var="unbiased")  # torch's defaults
    assert spec.generator[3] == ReLU() and spec.generator[-1] == Tanh()
    assert spec.discriminator[1] == LeakyReLU(slope=0.2)
    assert spec.discriminator[-1] == Flatten()  # the Sigmoid left to the loss, the (1, 1, 1) map flattened
    assert any("final Sigmoid is left to the loss" in n for n in read.notes)

    z = np.random.default_rng(3).standard_normal((4, NZ)).astype(np.float32)
    with torch.no_grad():
        images = G(torch.from_numpy(z)[:, :, None, None])
        probabilities = D(images).reshape(-1, 1).numpy()
    got_images = _reference_out(spec, "generator", G, tmp_path / "g.pth", z)
    np.testing.assert_allclose(got_images, images.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-5)
    logits = _reference_out(spec, "discriminator", D, tmp_path / "d.pth", images.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probabilities, rtol=0, atol=1e-6)


def test_a_sequential_mlp_and_a_functional_forward(tmp_path):
    G = nn.Sequential(nn.Linear(8, 32), nn.LeakyReLU(0.2), nn.Linear(32, 12), nn.Tanh())
    spec = spec_from_models(G).spec
    assert spec.generator == (Dense(units=32), LeakyReLU(slope=0.2), Dense(units=12), Tanh())
    assert (spec.latent_dim, spec.data_shape) == (8, (12,))
    functional = FunctionalG().eval()
    read = spec_from_models(functional)
    assert read.spec.generator == spec.generator  # F.leaky_relu(x, 0.2), torch.tanh read as layers
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with torch.no_grad():
        expected = functional(torch.from_numpy(z)).numpy()
    got = _reference_out(read.spec, "generator", functional, tmp_path / "g.pth", z)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert "discriminator: none given" in " ".join(read.notes)


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.Linear(16, 4)), "layer 1 (Dropout): no spec layer"),
        (
            nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(), nn.BatchNorm1d(16, momentum=None), nn.Linear(16, 4)),
            "layer 2 (BatchNorm1d): momentum=None",
        ),  # fmt: skip
        (
            nn.Sequential(nn.Linear(8, 32), nn.Unflatten(1, (2, 4, 4)), nn.Flatten(), nn.Linear(32, 4)),
            "layer 2 (Flatten): a flatten of a (4, 4, 2) image orders features C, H, W",
        ),  # fmt: skip
        (
            nn.Sequential(nn.Linear(8, 16), nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 1, 3, dilation=2)),
            "layer 2 (Conv2d): dilation and groups other than 1",
        ),  # fmt: skip
    ],
)
def test_what_the_spec_cannot_express_is_named_with_its_position_and_class(model, message):
    with pytest.raises(NotExpressible, match=r"Sequential layer \d") as err:
        spec_from_models(model)
    assert message in str(err.value), str(err.value)


def test_an_untraceable_forward_is_refused_with_the_way_out():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, z):
            return self.fc(z) if z.sum() > 0 else z

    with pytest.raises(SpecError, match="torch.fx cannot trace its forward.*nn.Sequential"):
        spec_from_models(Branchy())


def test_a_channels_first_view_reads_as_what_torch_computes_in_every_backend(framework, tmp_path):
    """``Linear`` then ``Unflatten(1, (C, H, W))``: ``Reshape(order="channels_first")``; the
    reference and each backend, holding the module's weights, give the module's own output."""
    from gan_backends.backends import get_backend

    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(8, 3 * 2 * 4), nn.Unflatten(1, (3, 2, 4)), nn.Conv2d(3, 2, 3, 1, 1), nn.Tanh())
    spec = spec_from_models(g).spec
    assert spec.generator[1] == Reshape(shape=(2, 4, 3), order="channels_first")
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with torch.no_grad():
        expected = g(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(_reference_out(spec, "generator", g, tmp_path / "g.pth", z), expected, atol=1e-6)
    params, buffers = to_canonical(read_native(tmp_path / "g.pth"), spec, networks=("generator",))
    from gan_backends.params import init_params

    full = {**init_params(spec, 0), **params}
    got = get_backend(framework)(spec, full).generate(z)
    np.testing.assert_allclose(got, expected, atol=1e-5)
