import numpy as np
import pytest

from gan_backends import get_preset, init_params, load_params, param_shapes, save_params
from gan_backends.backends import get_backend
from gan_backends.params import check_tree
from gan_backends.spec import InitSpec, SpecError


def test_names_and_canonical_shapes():
    shapes = param_shapes(get_preset("mlp"))
    assert shapes["generator.0.kernel"] == (100, 256)  # Dense kernel (in, out)
    assert shapes["generator.6.bias"] == (784,)
    assert shapes["discriminator.4.kernel"] == (256, 1)
    assert "generator.1.kernel" not in shapes  # index 1 is the LeakyReLU


def test_torch_default_init_bounds_and_moments():
    spec = get_preset("mlp")
    params = init_params(spec, seed=3)
    for name, value in params.items():
        fan_in = param_shapes(spec)[name.rsplit(".", 1)[0] + ".kernel"][0]
        bound = 1 / np.sqrt(fan_in)
        assert value.dtype == np.float32
        assert np.abs(value).max() <= bound
        # max |x| of n draws from U(-b, b) is below b(1 - 20/n) with probability e^-20: a
        # bound that is wrong by more than that (e.g. 1/sqrt(fan_in + 1)) fails here.
        assert np.abs(value).max() >= bound * (1 - 20 / value.size)
        if value.size > 10_000:  # U(-b, b): mean 0, variance b^2 / 3
            assert abs(value.mean()) < 0.01 * bound
            assert value.var() == pytest.approx(bound**2 / 3, rel=0.02)


def test_normal_init():
    spec = get_preset("mlp").replace(init=InitSpec(scheme="normal", std=0.02))
    params = init_params(spec, seed=0)
    assert params["generator.4.kernel"].std() == pytest.approx(0.02, rel=0.01)
    assert not params["generator.4.bias"].any()


def test_init_is_deterministic_and_seeded():
    spec = get_preset("tiny")
    a, b, c = init_params(spec, 1), init_params(spec, 1), init_params(spec, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["generator.0.kernel"], c["generator.0.kernel"])


def test_safetensors_round_trip_with_spec(tmp_path):
    spec = get_preset("mlp")
    params = init_params(spec, 5)
    path = tmp_path / "ckpt.safetensors"
    save_params(path, params, spec)
    loaded, loaded_spec = load_params(path)
    assert loaded_spec == spec
    assert list(loaded) == list(params)
    for k in params:
        assert loaded[k].dtype == params[k].dtype and np.array_equal(loaded[k], params[k])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind
    assert path.stat().st_mode & 0o044  # readable by others (umask permitting), unlike mkstemp's 0600


def test_check_tree_names_every_problem():
    spec = get_preset("tiny")
    params = init_params(spec)
    params["generator.0.kernel"] = params["generator.0.kernel"].T
    del params["discriminator.0.bias"]
    params["discriminator.9.kernel"] = np.zeros(3)
    with pytest.raises(SpecError) as err:
        check_tree(spec, params)
    message = str(err.value)
    assert "generator.0.kernel: expected shape (8, 16), got (16, 8)" in message
    assert "missing discriminator.0.bias (10,)" in message
    assert "unexpected parameter discriminator.9.kernel" in message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backend_layout_round_trip_is_bit_exact(framework, dtype):
    spec = get_preset("tiny", dtype=dtype)
    params = init_params(spec, 7)
    backend = get_backend(framework)(spec, params)
    exported = backend.get_params()
    assert list(exported) == list(params)
    for k in params:
        assert exported[k].dtype == params[k].dtype, k
        assert np.array_equal(exported[k], params[k]), k


def test_torch_native_layout_is_out_in():
    """The canonical kernel (in, out) lands in nn.Linear.weight as (out, in), state_dict names aligned."""
    from conftest import require_backend

    require_backend("torch")
    spec = get_preset("tiny")
    params = init_params(spec, 0)
    backend = get_backend("torch")(spec, params)
    state = backend.G.state_dict()
    assert np.array_equal(state["0.weight"].cpu().numpy(), params["generator.0.kernel"].T)
    assert np.array_equal(state["2.bias"].cpu().numpy(), params["generator.2.bias"])


def test_keras_and_flax_default_inits_by_their_formulas():
    spec = get_preset("mlp")
    glorot = init_params(spec.replace(init=InitSpec(scheme="glorot_uniform")), 0)
    k = glorot["generator.4.kernel"]  # Dense 512 -> 1024
    bound = np.sqrt(6.0 / (512 + 1024))
    assert k.shape == (512, 1024) and np.abs(k).max() <= bound and np.abs(k).max() > 0.99 * bound
    assert np.std(k) == pytest.approx(bound / np.sqrt(3), rel=0.01)  # uniform's std
    assert not glorot["generator.4.bias"].any()
    lecun = init_params(spec.replace(init=InitSpec(scheme="lecun_normal")), 0)
    k = lecun["generator.4.kernel"].astype(np.float64)
    assert np.std(k) == pytest.approx(np.sqrt(1.0 / 512), rel=0.01)  # variance 1/fan_in after truncation
    assert np.abs(k).max() <= 2.0 * np.sqrt(1.0 / 512) / 0.87962566103423978 + 1e-7
    assert not lecun["discriminator.0.bias"].any()
