"""A spectrally normalised torch critic, saved as torch saves it, ported with the port API.

The critic (Conv2d, LeakyReLU, Conv2d to a 1x1 map, Flatten, Linear, each wrapped by
``torch.nn.utils.spectral_norm`` or by ``torch.nn.utils.parametrizations.spectral_norm``) is
trained two steps with torch's own Adam, so its stored ``u``/``v`` are no longer the ones drawn
at registration, and saved with its own ``state_dict()``. Every expected value is that module's
own ``eval()`` logits, computed by torch: the ported networks must give them in Flax and Keras
(the stored u, v carried over, conv v permuted), and the torch file the port writes must load
strictly into a module wrapped by torch's ``spectral_norm``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend_module

require_backend_module("torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gan_backends.port import PortError, native_outputs, port, read_native, to_canonical  # noqa: E402
from gan_backends.port.spec_from import NotExpressible, read_network, spec_from_models  # noqa: E402
from gan_backends.presets import get_preset  # noqa: E402
from gan_backends.spec import Conv2D, Dense, Flatten, LeakyReLU, Reshape, SpectralNormSpec, Tanh  # noqa: E402

OLD = torch.nn.utils.spectral_norm
NEW = torch.nn.utils.parametrizations.spectral_norm
APIS = {"spectral_norm": OLD, "parametrizations.spectral_norm": NEW}
SN = {"n_power_iterations": 1, "eps": 1e-12}


def _critic(wrap) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        wrap(nn.Conv2d(3, 4, 4, 2, 1)),
        nn.LeakyReLU(0.1),
        wrap(nn.Conv2d(4, 8, 4, 1, 0)),
        nn.Flatten(),  # of a 1x1 map: the canonical order too
        wrap(nn.Linear(8, 1)),
    )


def _trained(wrap) -> tuple[nn.Sequential, dict]:
    """The critic after two Adam steps (u, v moved by the training forwards), in eval mode, and
    its vectors as registration left them."""
    d = _critic(wrap)
    start = {k: v.clone() for k, v in d.state_dict().items() if k.endswith(("_u", "_v"))}
    opt = torch.optim.Adam(d.parameters(), 1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        loss = d(torch.randn(4, 3, 8, 8, generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d.eval(), start


def _spec(sn: dict = SN):
    return get_preset("dcgan-small").replace(
        name="sn-critic",
        latent_dim=4,
        data_shape=(8, 8, 3),
        generator=(Dense(units=192), Reshape(shape=(8, 8, 3)), Tanh()),
        discriminator=(
            Conv2D(filters=4, kernel=4, stride=2, padding=1, spectral_norm=sn),
            LeakyReLU(slope=0.1),
            Conv2D(filters=8, kernel=4, stride=1, padding=0, spectral_norm=sn),
            Flatten(),
            Dense(units=1, spectral_norm=sn),
        ),
    )


def _images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(7).uniform(-1, 1, (n, 8, 8, 3)).astype(np.float32)


def _own_logits(d: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return d(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module", params=list(APIS))
def saved(request, tmp_path_factory) -> tuple[str, nn.Sequential, str]:
    d, start = _trained(APIS[request.param])
    for key, value in start.items():  # the vectors moved (u of one output is ±1 for ever)
        assert value.numel() == 1 or not torch.allclose(d.state_dict()[key], value), key
    path = tmp_path_factory.mktemp("sn") / "critic.pt"
    torch.save(d.state_dict(), path)
    return request.param, d, str(path)


@pytest.mark.parametrize("to, name", [("flax", "critic.msgpack"), ("keras", "critic.weights.h5")])
def test_a_spectrally_normalised_torch_critic_ports_with_its_eval_logits(saved, to, name, tmp_path):
    """Both APIs' keys read into kernel + ``sn_u``/``sn_v``; the Flax and Keras files the port
    writes give the torch module's own eval logits (relative 1e-5), and read back (their
    ``sn_u``/``sn_v`` found again) they port to a torch file the module loads strictly."""
    api, d, path = saved
    out = tmp_path / name
    result = port(path, _spec(), to, out, models={"discriminator": d})
    assert result.passed and result.against_model, result.summary()
    x = _images()
    ported = native_outputs(to, _spec(), {"discriminator": x}, path=out)["discriminator"]
    assert _relative(ported, _own_logits(d, x)) < 1e-5, api
    assert port(out, _spec(), "torch", tmp_path / "back.pt", networks="discriminator").passed
    back = _critic(OLD)
    back.load_state_dict(torch.load(tmp_path / "back.pt", weights_only=True), strict=True)
    assert _relative(_own_logits(back.eval(), x), _own_logits(d, x)) < 1e-6


def test_the_torch_file_written_loads_strictly_into_torchs_spectral_norm(saved, tmp_path):
    """``port --to torch`` writes ``weight_orig``, ``weight_u``, ``weight_v`` (also from the
    parametrization API's keys): a module wrapped by ``torch.nn.utils.spectral_norm`` loads
    them strictly and gives the source module's eval logits."""
    _, d, path = saved
    out = tmp_path / "ported.pt"
    assert port(path, _spec(), "torch", out).passed
    theirs = _critic(OLD)
    theirs.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = _images()
    assert _relative(_own_logits(theirs.eval(), x), _own_logits(d, x)) < 1e-6


def test_a_spectral_norm_file_and_a_spec_without_it_do_not_fit(saved):
    """The vectors are not dropped: a spec without ``spectral_norm`` names them as unplaced."""
    _, _, path = saved
    plain = _spec(None)
    with pytest.raises(PortError, match="sn_u"):
        to_canonical(read_native(path), plain, networks="discriminator")


def test_spec_from_reads_either_api_and_port_model_runs_the_critic_in_eval_mode(saved, tmp_path):
    """The introspection reads the hook's or parametrization's ``n_power_iterations`` and
    ``eps``; the spec it gives ports the critic, verified against the critic itself."""
    api, _, _ = saved
    d, _ = _trained(lambda m: APIS[api](m, n_power_iterations=2, eps=1e-10))
    layers = read_network(d, (8, 8, 3))[1].layers
    wanted = SpectralNormSpec(n_power_iterations=2, eps=1e-10)
    assert [getattr(layer, "spectral_norm", None) for layer in layers] == [wanted, None, wanted, None, wanted]
    path = tmp_path / "critic.pt"
    torch.save(d.state_dict(), path)
    g = nn.Sequential(nn.ConvTranspose2d(4, 3, 8, 1, 0), nn.Tanh())
    spec = spec_from_models(g, d).spec
    result = port(path, spec, "flax", tmp_path / "d.msgpack", networks="discriminator", models={"discriminator": d})
    assert result.passed and result.against_model, result.summary()


@pytest.mark.parametrize(
    "wrap, says",
    [
        (lambda m: torch.nn.utils.parametrizations.weight_norm(m), "_WeightNorm"),
        (lambda m: torch.nn.utils.weight_norm(m), "weight_norm"),
        (lambda m: OLD(m, dim=1), "dim=1"),
    ],
)
def test_what_the_spec_cannot_express_is_refused(wrap, says):
    with pytest.raises(NotExpressible, match=says):
        read_network(nn.Sequential(wrap(nn.Linear(3, 2))), (3,))
