"""A public PyTorch SNGAN (Mimicry's ResNet generator and spectrally normalised discriminator,
``tests/public_sngan.py``), trained a few steps and saved with its own ``state_dict``, ported to
Flax and Keras with the spec read from the modules themselves: the same images and logits.

Every expected value is the module's own ``eval()`` output, computed by torch. The training
(Adam, hinge loss, two steps) moves the BatchNorm statistics and the spectral-norm ``u``/``v``
off their initial values, so the port must carry them over. The model reads through the torch
introspection's residual structure (``introspect_blocks.py``: the adds of ``_residual(x) +
_shortcut(x)``, the in-place ReLU of Mimicry's ``DBlock`` feeding its shortcut), the C-major
``h.view(N, C, 4, 4)`` (``Reshape(order="channels_first")``), and the port matches the file's
tensors by the modules that hold them (``GBlock`` registers ``c1, c2, b1, b2``, calls ``b1, c1``).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend, require_backend_module

require_backend_module("torch")

import torch  # noqa: E402
from public_sngan import SNGANDiscriminator32, SNGANGenerator32  # noqa: E402

from gan_backends.port import native_outputs, port  # noqa: E402
from gan_backends.port.spec_from import spec_from_models  # noqa: E402
from gan_backends.spec import ReLU, Reshape, Residual  # noqa: E402

NZ, WIDTH = 16, 16  # sngan-small's sizes: 8x8 images, one up-block


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """G and D after two hinge-loss steps with torch's Adam(2e-4, (0, 0.9)), saved as
    ``torch.save(net.state_dict(), path)`` each."""
    torch.manual_seed(0)
    g, d = SNGANGenerator32(nz=NZ, ngf=WIDTH, n_blocks=1), SNGANDiscriminator32(ndf=WIDTH)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.9))
    real = torch.rand(4, 3, 8, 8) * 2 - 1
    for _ in range(2):
        opt_d.zero_grad()
        loss_d = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(g(torch.randn(4, NZ)).detach())).mean()
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        (-d(g(torch.randn(4, NZ))).mean()).backward()
        opt_g.step()
    path = tmp_path_factory.mktemp("sngan") / "sngan.pth"
    torch.save({"generator": g.state_dict(), "discriminator": d.state_dict()}, path)  # a training script's file
    assert float(g.block2.b1.running_var.sub(1).abs().max()) > 1e-3  # statistics moved
    return g.eval(), d.eval(), path


def _own(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    inputs = torch.from_numpy(x if x.ndim == 2 else x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        y = module(inputs).numpy()
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


def test_the_spec_read_from_mimicrys_modules(trained):
    """The C-major view, the blocks with their shortcuts; D's in-place ReLU before its blocks."""
    g, d, _ = trained
    spec = spec_from_models(g, d).spec
    assert spec.generator[1] == Reshape(shape=(4, 4, WIDTH), order="channels_first")
    assert isinstance(spec.generator[2], Residual) and len(spec.generator[2].shortcut) == 2
    kinds = [type(layer).__name__ for layer in spec.discriminator]
    assert kinds[:7] == ["Residual", "ReLU", "Residual", "ReLU", "Residual", "ReLU", "Residual"]
    assert spec.discriminator[4].shortcut == () and isinstance(spec.discriminator[3], ReLU)


@pytest.mark.parametrize("to, suffix", [("flax", ".msgpack"), ("keras", ".weights.h5")])
def test_a_trained_public_sngan_ports_with_its_own_images_and_logits(trained, to, suffix, tmp_path):
    """G's eval images on the same noise and D's eval logits on the same images, in the
    target framework, within 1e-5 of the modules' own (relative). The port's own check against
    the modules runs for Flax (``port --model``; for Keras it would only repeat it, at 10 s)."""
    require_backend("jax" if to == "flax" else "tensorflow")
    g, d, path = trained
    spec = spec_from_models(g, d).spec
    models = {"generator": g, "discriminator": d}
    out = tmp_path / f"sngan{suffix}"
    result = port(path, spec, to, out, models=models, check=to == "flax")
    assert result.networks == ("generator", "discriminator")
    assert to != "flax" or (result.passed and result.against_model), result.summary()
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, NZ)).astype(np.float32)
    images = _own(g, z)
    x = np.concatenate([images, rng.uniform(-1, 1, images.shape).astype(np.float32)])
    ported = native_outputs(to, spec, {"generator": z, "discriminator": x}, path=out)
    assert _relative(ported["generator"], images) < 1e-5
    assert _relative(ported["discriminator"], _own(d, x)) < 1e-5
