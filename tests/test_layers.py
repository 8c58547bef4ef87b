"""Per-layer comparison finds the layer a broken port broke, and only that one."""

import numpy as np
import pytest

from gan_backends import get_preset, init_params
from gan_backends.backends import get_backend
from gan_backends.check import run_check, tolerance
from gan_backends.check.layers import layer_report
from gan_backends.spec import LeakyReLU

TOL = tolerance("float32", "float64", "highest").value


def _spec():
    # G: Dense(8->16) LeakyReLU Dense(16->16) LeakyReLU Dense(16->12) Tanh; layer 2 is square, so a
    # kernel loaded untransposed has the right shape and no loader can notice.
    return get_preset("tiny", g_hidden=(16, 16))


def _inputs(spec, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((16, spec.latent_dim)).astype(np.float32)
    real = rng.uniform(-1, 1, (16, *spec.data_shape)).astype(np.float32)
    return z, real


def test_untransposed_kernel_is_named(framework):
    spec = _spec()
    params = init_params(spec, 0)
    broken = dict(params, **{"generator.2.kernel": params["generator.2.kernel"].T.copy()})
    ported = get_backend(framework)(spec, broken)
    reference = get_backend("numpy")(spec, params)
    rows, first = layer_report(spec, ported, reference, *_inputs(spec), TOL)
    bad = first["generator"]
    assert bad is not None and bad.index == 2 and bad.layer.startswith("Dense")
    assert all(r.passed for r in rows if r.network == "generator" and r.index < 2)
    assert bad.rel > 1e-2 and first["discriminator"] is None


def test_wrong_leaky_slope_is_named(framework):
    spec = _spec()
    params = init_params(spec, 0)
    layers = list(spec.discriminator)
    layers[1] = LeakyReLU(slope=0.01)  # torch's default where the spec says 0.2
    ported = get_backend(framework)(spec.replace(discriminator=tuple(layers)), params)
    reference = get_backend("numpy")(spec, params)
    _, first = layer_report(spec, ported, reference, *_inputs(spec), TOL)
    assert first["generator"] is None
    bad = first["discriminator"]
    assert bad is not None and bad.index == 1 and "LeakyReLU" in bad.layer


def test_check_fails_when_one_backend_layer_changes(monkeypatch):
    """The whole check, with one framework's layer subtly wrong (slope 0.2 -> 0.21): it fails,
    and the report's first divergence is that layer in every pair with that backend."""
    from gan_backends.backends.torch import layers as torch_layers

    original = torch_layers.build_layer

    def sloppy(layer, *args):
        if isinstance(layer, LeakyReLU):
            layer = LeakyReLU(slope=0.21)
        return original(layer, *args)

    monkeypatch.setattr(torch_layers, "build_layer", sloppy)
    report = run_check(_spec(), ["torch", "numpy"], steps=2, batch_size=8, lockstep=False)
    assert not report.passed
    (pair,) = report.pairs
    first = pair.first_divergence
    assert first["generator"].index == 1 and first["discriminator"].index == 1
    assert "LeakyReLU" in first["generator"].layer


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_agreeing_backends_have_no_divergence(framework, net):
    spec = _spec()
    params = init_params(spec, 1)
    rows, first = layer_report(
        spec, get_backend(framework)(spec, params), get_backend("numpy")(spec, params), *_inputs(spec, 1), TOL
    )
    assert first[net] is None
    assert len([r for r in rows if r.network == net]) == len(spec.layers(net))
