"""An SNGAN-style torch generator and discriminator (``nn.Upsample``, ``F.interpolate``,
``nn.AvgPool2d``, ``F.avg_pool2d``, ``torch.sum(h, dim=(2, 3))``) read into spec layers: held
against the modules' documented defaults by hand, and the read spec run in the float64 reference
with the models' own weights against the models' own outputs."""

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
from gan_backends.spec import AvgPool2D, GlobalSumPool, Upsample  # noqa: E402


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.up = nn.UpsamplingBilinear2d(scale_factor=2)  # align_corners=True, unlike F.interpolate's default
        self.conv = nn.Conv2d(1, 2, 3, 1, 1)

    def forward(self, z):
        h = self.fc(z).view(-1, 1, 4, 4)
        h = F.interpolate(self.up(h), scale_factor=2, mode="bilinear", align_corners=False)
        return torch.tanh(self.conv(nn.functional.interpolate(h, scale_factor=0.5, mode="nearest")))


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, 1, 1)
        self.pool = nn.AvgPool2d(3, 1, padding=1)  # count_include_pad: torch's True
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = F.avg_pool2d(self.pool(h), 2)
        h = F.avg_pool2d(h, 3, 1, 1, count_include_pad=False)
        h = F.interpolate(h, scale_factor=2)  # nearest by default
        return self.fc(torch.sum(h, dim=(2, 3)))


def _reference_out(spec, net, model, path, x):
    torch.save(model.state_dict(), path)
    params, buffers = to_canonical(read_native(path), spec, networks=(net,))
    return Network(spec, net).forward({**params, **buffers}, x.astype(np.float64))[0]


def test_a_downscaling_interpolate_is_refused():
    with pytest.raises(NotExpressible, match="scale_factor 0.5"):
        spec_from_models(Generator())


def test_sngan_style_models_read_as_their_spec_and_compute_what_they_compute(tmp_path):
    torch.manual_seed(0)

    class G(Generator):
        def forward(self, z):  # the generator without its refused downscaling
            h = self.fc(z).view(-1, 1, 4, 4)
            h = F.interpolate(self.up(h), scale_factor=2, mode="bilinear", align_corners=False)
            return torch.tanh(self.conv(h))

    g, d = G().eval(), Discriminator().eval()
    spec = spec_from_models(g, d).spec
    assert spec.data_shape == (16, 16, 2)
    assert spec.generator[2] == Upsample(factor=2, method="bilinear", align_corners=True)
    assert spec.generator[3] == Upsample(factor=2, method="bilinear", align_corners=False)
    assert spec.discriminator[2] == AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=True)
    assert spec.discriminator[3] == AvgPool2D(pool=2, stride=2, padding=0)
    assert spec.discriminator[4] == AvgPool2D(pool=3, stride=1, padding=1, count_include_pad=False)
    assert spec.discriminator[5] == Upsample(factor=2, method="nearest")
    assert spec.discriminator[6] == GlobalSumPool()

    z = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    with torch.no_grad():
        images = g(torch.from_numpy(z))
        logits = d(images).numpy()
    nhwc = images.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(_reference_out(spec, "generator", g, tmp_path / "g.pth", z), nhwc, atol=1e-6)
    np.testing.assert_allclose(_reference_out(spec, "discriminator", d, tmp_path / "d.pth", nhwc), logits, atol=1e-5)
