"""``gan_backends.port``: native checkpoints of each framework to the canonical trees and back.

Every source here is written by the framework itself (``torch.save(model.state_dict())``,
Keras ``save_weights``, ``flax.serialization.msgpack_serialize``), from a model written by hand
the way a tutorial writes it, and the converted tree is held against that model's own output
through the float64 NumPy reference. Sizes are small except the tutorial MLP generator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend

from gan_backends.backends import is_available
from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.backends.numpy.network import Network
from gan_backends.params import init_buffers, init_params
from gan_backends.port import (
    Agreement,
    NativeTensor,
    PortError,
    PortResult,
    port,
    read_native,
    to_canonical,
    verify,
    write_native,
)
from gan_backends.presets import get_preset, tiny

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TOL = 1e-5


def reference_g(spec, params, buffers, z: np.ndarray) -> np.ndarray:
    """G(z) of the canonical generator tree in the float64 NumPy reference (inference mode)."""
    return Network(spec, "generator").forward({**params, **buffers}, np.asarray(z, np.float64))[0]


def noise(spec, batch: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, spec.latent_dim)).astype(np.float32)


def random_bn_state(rng: np.random.Generator, channels: int) -> list[np.ndarray]:
    """Non-trivial [scale, bias, running_mean, running_var]."""
    return [
        rng.uniform(0.5, 1.5, channels).astype(np.float32),
        rng.normal(0.0, 0.3, channels).astype(np.float32),
        rng.normal(0.0, 0.5, channels).astype(np.float32),
        rng.uniform(0.5, 2.0, channels).astype(np.float32),
    ]


# -- torch -------------------------------------------------------------------------------------


def test_torch_tutorial_mlp_generator(tmp_path: Path) -> None:
    """The tutorial's nn.Sequential G (G only), torch.save(model.state_dict()): same G(z)."""
    require_backend("torch")
    import torch
    from torch import nn

    torch.manual_seed(0)
    G = nn.Sequential(
        nn.Linear(100, 256),
        nn.LeakyReLU(0.2),
        nn.Linear(256, 512),
        nn.LeakyReLU(0.2),
        nn.Linear(512, 1024),
        nn.LeakyReLU(0.2),
        nn.Linear(1024, 784),
        nn.Tanh(),
    )
    path = tmp_path / "generator.pth"
    torch.save(G.state_dict(), path)

    spec = get_preset("mlp")
    params, buffers = to_canonical(read_native(path), spec)
    assert list(params) == [f"generator.{i}.{p}" for i in (0, 2, 4, 6) for p in ("kernel", "bias")]
    assert buffers == {}
    assert params["generator.0.kernel"].shape == (100, 256)
    z = noise(spec)
    with torch.no_grad():
        expected = G(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(reference_g(spec, params, buffers, z), expected, rtol=0, atol=TOL)


def dcgan_small_torch_generator(seed: int = 0):
    """dcgan-small's G as a hand-written nn.Sequential (the PyTorch DCGAN tutorial's shape), in
    eval mode with non-trivial BatchNorm parameters and running statistics."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    G = nn.Sequential(
        nn.Unflatten(1, (16, 1, 1)),
        nn.ConvTranspose2d(16, 16, 4, 1, 0, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(True),
        nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(True),
        nn.ConvTranspose2d(8, 1, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    rng = np.random.default_rng(seed)
    for module in G:
        if isinstance(module, nn.BatchNorm2d):
            scale, bias, mean, var = random_bn_state(rng, module.num_features)
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(scale))
                module.bias.copy_(torch.from_numpy(bias))
                module.running_mean.copy_(torch.from_numpy(mean))
                module.running_var.copy_(torch.from_numpy(var))
    return G.eval()


def test_torch_conv_generator_with_batchnorm(tmp_path: Path) -> None:
    """ConvTranspose2d + BatchNorm2d (eval, non-trivial running stats) against dcgan-small's G."""
    require_backend("torch")
    import torch

    G = dcgan_small_torch_generator()
    path = tmp_path / "netG.pt"
    torch.save(G.state_dict(), path)

    spec = get_preset("dcgan-small")
    ckpt = read_native(path)
    assert not [t for t in ckpt if t.role == "skip" and not t.name.endswith("num_batches_tracked")]
    params, buffers = to_canonical(ckpt, spec)
    assert set(buffers) == {f"generator.{i}.{b}" for i in (2, 5) for b in ("running_mean", "running_var")}
    np.testing.assert_array_equal(buffers["generator.2.running_var"], G[2].running_var.numpy())
    z = noise(spec)
    with torch.no_grad():
        expected = G(torch.from_numpy(z)).permute(0, 2, 3, 1).numpy()  # NCHW -> canonical NHWC
    np.testing.assert_allclose(reference_g(spec, params, buffers, z), expected, rtol=0, atol=TOL)


def test_torch_wrapper_key_is_reported(tmp_path: Path) -> None:
    require_backend("torch")
    import torch
    from torch import nn

    spec = tiny()
    G = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 12), nn.Tanh())
    path = tmp_path / "ckpt.pt"
    torch.save({"netG": G.state_dict(), "epoch": 3}, path)
    ckpt = read_native(path)
    assert any("'netG'" in note for note in ckpt.notes)
    params, _ = to_canonical(ckpt, spec)
    np.testing.assert_array_equal(params["generator.2.kernel"], G[2].weight.detach().numpy().T)


def test_discriminator_only_file_is_detected(tmp_path: Path) -> None:
    require_backend("torch")
    import torch
    from torch import nn

    spec = tiny()
    D = nn.Sequential(nn.Linear(12, 10), nn.LeakyReLU(0.2), nn.Linear(10, 1))
    path = tmp_path / "d.pt"
    torch.save(D.state_dict(), path)
    params, _ = to_canonical(read_native(path), spec)
    assert list(params) == [
        "discriminator.0.kernel",
        "discriminator.0.bias",
        "discriminator.2.kernel",
        "discriminator.2.bias",
    ]


def test_wrong_shape_names_both_sides(tmp_path: Path) -> None:
    require_backend("torch")
    import torch
    from torch import nn

    spec = tiny()
    G = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 13), nn.Tanh())  # 13, not 12
    path = tmp_path / "g.pt"
    torch.save(G.state_dict(), path)
    with pytest.raises(PortError) as info:
        to_canonical(read_native(path), spec, networks="generator")
    message = str(info.value)
    for part in ("2.weight", "(13, 16)", "generator.2.kernel", "(16, 12)", "2.bias", "(13,)", "(12,)"):
        assert part in message, (part, message)
    assert "generator layer 2 Dense(units=12" in message
    # Without networks=, the error says what the file could have been, and still names both sides.
    with pytest.raises(PortError, match=r"generator\.2\.kernel expected \(16, 12\)"):
        to_canonical(read_native(path), spec)


def test_mapping_fixes_a_reordered_file(tmp_path: Path) -> None:
    require_backend("torch")
    import torch
    from torch import nn

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(16, 12)  # registered first: state_dict order is out.*, then hidden.*
            self.hidden = nn.Linear(8, 16)

        def forward(self, z):
            return torch.tanh(self.out(nn.functional.leaky_relu(self.hidden(z), 0.2)))

    spec = tiny()
    G = Generator()
    path = tmp_path / "g.pt"
    torch.save(G.state_dict(), path)
    with pytest.raises(PortError, match=r"out\.weight \(12, 16\) \(canonical \(16, 12\)\) vs generator\.0\.kernel"):
        to_canonical(read_native(path), spec, networks="generator")
    mapping = {"hidden.weight": "generator.0.kernel", "hidden.bias": "generator.0.bias"}  # the rest by order
    params, buffers = to_canonical(read_native(path), spec, mapping=mapping)
    z = noise(spec)
    with torch.no_grad():
        expected = G(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(reference_g(spec, params, buffers, z), expected, rtol=0, atol=TOL)


def test_ambiguous_order_is_reported() -> None:
    """Two layers whose relative order the file does not know, both fitting either place."""
    spec = tiny(data_shape=(4,), latent_dim=4, g_hidden=(4,))
    rng = np.random.default_rng(0)
    tensors = [
        NativeTensor(f"{m}/{r}", rng.standard_normal(s).astype(np.float32), r, layer=m, chain=m, network="generator")
        for m in ("a", "b")
        for r, s in (("kernel", (4, 4)), ("bias", (4,)))
    ]
    with pytest.raises(PortError, match="ambiguous"):
        to_canonical(tensors, spec)
    params, _ = to_canonical(tensors, spec, mapping={"b/kernel": "generator.0.kernel"})
    np.testing.assert_array_equal(params["generator.0.kernel"], tensors[2].array)
    np.testing.assert_array_equal(params["generator.0.bias"], tensors[3].array)


# -- keras -------------------------------------------------------------------------------------


def test_keras_mlp_with_more_than_ten_dense_layers(tmp_path: Path) -> None:
    """h5 groups sort as dense, dense_1, dense_10, dense_11, dense_2: order recovered by counter."""
    require_backend("tensorflow")
    import keras

    spec = tiny(g_hidden=(6,) * 11)
    layers = [keras.Input((8,))]
    for _ in range(11):
        layers += [keras.layers.Dense(6), keras.layers.LeakyReLU(negative_slope=0.2)]
    layers += [keras.layers.Dense(12), keras.layers.Activation("tanh")]
    G = keras.Sequential(layers)
    path = tmp_path / "g.weights.h5"
    G.save_weights(path)

    params, buffers = to_canonical(read_native(path), spec)
    z = noise(spec)
    np.testing.assert_allclose(reference_g(spec, params, buffers, z), np.asarray(G(z)), rtol=0, atol=TOL)


def test_keras_conv_generator_with_batchnorm(tmp_path: Path) -> None:
    """Conv2DTranspose (kh, kw, out, in) + BatchNormalization (gamma, beta, moving stats): the
    classes' interleaving comes from the spec."""
    require_backend("tensorflow")
    import keras

    L = keras.layers
    G = keras.Sequential(
        [
            keras.Input((16,)),
            L.Reshape((1, 1, 16)),
            L.Conv2DTranspose(16, 4, 1, padding="valid", use_bias=False),
            L.BatchNormalization(momentum=0.9, epsilon=1e-5),
            L.ReLU(),
            L.Conv2DTranspose(8, 4, 2, padding="same", use_bias=False),  # = torch k4 s2 p1
            L.BatchNormalization(momentum=0.9, epsilon=1e-5),
            L.ReLU(),
            L.Conv2DTranspose(1, 4, 2, padding="same", use_bias=False),
            L.Activation("tanh"),
        ]
    )
    rng = np.random.default_rng(1)
    for layer in G.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights(random_bn_state(rng, layer.weights[0].shape[0]))
    path = tmp_path / "g.weights.h5"
    G.save_weights(path)

    spec = get_preset("dcgan-small")
    ckpt = read_native(path)
    assert any("interleaving" in note for note in ckpt.notes)
    params, buffers = to_canonical(ckpt, spec)
    z = noise(spec)
    expected = np.asarray(G(z, training=False))
    np.testing.assert_allclose(reference_g(spec, params, buffers, z), expected, rtol=0, atol=TOL)


def test_keras2_h5_layer_names(tmp_path: Path) -> None:
    """The Keras 2 .h5 layout (root layer_names, per-layer weight_names), written by Keras' own
    legacy writer."""
    require_backend("tensorflow")
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    spec = tiny()
    G = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16), keras.layers.LeakyReLU(0.2), keras.layers.Dense(12)]
    )
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, G)
    params, _ = to_canonical(read_native(path), spec)
    np.testing.assert_array_equal(params["generator.2.kernel"], G.layers[2].kernel.numpy())


# -- flax --------------------------------------------------------------------------------------


def test_flax_mlp_with_more_than_ten_dense_layers(tmp_path: Path) -> None:
    require_backend("jax")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import serialization

    class Generator(nn.Module):
        @nn.compact
        def __call__(self, z):
            x = z
            for _ in range(11):
                x = nn.leaky_relu(nn.Dense(6, precision="highest")(x), 0.2)
            return jnp.tanh(nn.Dense(12, precision="highest")(x))

    spec = tiny(g_hidden=(6,) * 11)
    z = noise(spec)
    variables = Generator().init(jax.random.key(0), z)
    path = tmp_path / "g.msgpack"
    path.write_bytes(serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, variables)))

    params, buffers = to_canonical(read_native(path), spec)
    expected = np.asarray(Generator().apply(variables, z))
    np.testing.assert_allclose(reference_g(spec, params, buffers, z), expected, rtol=0, atol=TOL)


def test_flax_conv_transpose_layout_against_reference_activations(tmp_path: Path) -> None:
    """flax nn.ConvTranspose (transpose_kernel=False) stores (kh, kw, in, out) and does not flip:
    converted, every ConvTranspose layer's output equals the canonical ConvTranspose2D's, layer
    by layer (the NumPy reference's activations), and so does G(z) with nn.BatchNorm."""
    require_backend("jax")
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import serialization

    hi = "highest"

    class Generator(nn.Module):
        @nn.compact
        def __call__(self, z):
            x = z.reshape(z.shape[0], 1, 1, 16)
            x = nn.ConvTranspose(16, (4, 4), (1, 1), padding="VALID", use_bias=False, precision=hi)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5)(x))
            x = nn.ConvTranspose(8, (4, 4), (2, 2), padding=((2, 2), (2, 2)), use_bias=False, precision=hi)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5)(x))
            x = nn.ConvTranspose(1, (4, 4), (2, 2), padding=((2, 2), (2, 2)), use_bias=False, precision=hi)(x)
            return jnp.tanh(x)

    spec = get_preset("dcgan-small")
    z = noise(spec)
    variables = jax.tree_util.tree_map(np.asarray, Generator().init(jax.random.key(0), z))
    rng = np.random.default_rng(2)
    for name in ("BatchNorm_0", "BatchNorm_1"):
        scale, bias, mean, var = random_bn_state(rng, variables["params"][name]["scale"].shape[0])
        variables["params"][name] = {"scale": scale, "bias": bias}
        variables["batch_stats"][name] = {"mean": mean, "var": var}
    path = tmp_path / "g.msgpack"
    path.write_bytes(serialization.msgpack_serialize(variables))

    params, buffers = to_canonical(read_native(path), spec)
    full = {**init_params(spec), **params}
    reference = NumpyReference(spec, full)
    reference.set_buffers({**init_buffers(spec), **buffers})
    acts = reference.activations("generator", z)
    y, state = Generator().apply(variables, z, capture_intermediates=True)
    inter = state["intermediates"]
    for module, index in (("ConvTranspose_0", 1), ("ConvTranspose_1", 4), ("ConvTranspose_2", 7)):
        np.testing.assert_allclose(acts[index], np.asarray(inter[module]["__call__"][0]), rtol=0, atol=TOL)
    np.testing.assert_allclose(acts[-1], np.asarray(y), rtol=0, atol=TOL)


def test_flax_orbax_directory(tmp_path: Path) -> None:
    require_backend("jax")
    pytest.importorskip("orbax.checkpoint")
    import orbax.checkpoint as ocp

    spec = tiny()
    rng = np.random.default_rng(3)
    tree = {
        "params": {
            "Dense_0": {"kernel": rng.standard_normal((8, 16)), "bias": rng.standard_normal(16)},
            "Dense_1": {"kernel": rng.standard_normal((16, 12)), "bias": rng.standard_normal(12)},
        }
    }
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((tmp_path / "ckpt").resolve(), tree)
    checkpointer.wait_until_finished()
    params, _ = to_canonical(read_native(tmp_path / "ckpt"), spec)
    np.testing.assert_array_equal(params["generator.2.kernel"], tree["params"]["Dense_1"]["kernel"].astype(np.float32))


# -- writers -----------------------------------------------------------------------------------


def test_round_trip_torch_flax_keras_torch_is_bit_exact(tmp_path: Path) -> None:
    """Both dcgan-small networks: torch -> canonical -> flax file -> canonical -> keras file ->
    canonical -> torch file; every parameter and running statistic bit for bit."""
    for name in ("torch", "jax", "tensorflow"):
        require_backend(name)
    import torch

    from gan_backends.backends.torch.layers import build_network

    spec = get_preset("dcgan-small")
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    original = {}
    for net in ("generator", "discriminator"):
        seq = build_network(spec, net)
        for module in seq:
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                state = random_bn_state(rng, module.num_features)
                for tensor, value in zip((module.weight, module.bias, module.running_mean, module.running_var), state):
                    tensor.data.copy_(torch.from_numpy(value))
        original[net] = seq.state_dict()
    source = tmp_path / "gan.pt"
    torch.save({"generator": original["generator"], "discriminator": original["discriminator"]}, source)

    g_only, _ = to_canonical(read_native(source), spec, networks="generator")
    assert {name.split(".")[0] for name in g_only} == {"generator"}
    params, buffers = to_canonical(read_native(source), spec)
    assert len(params) == len(init_params(spec)) and len(buffers) == len(init_buffers(spec))
    write_native(params, buffers, spec, "safetensors", tmp_path / "gan.safetensors")
    g_params, g_buffers = to_canonical(read_native(tmp_path / "gan.safetensors"), spec, networks="generator")
    assert list(g_params) == list(g_only) and all(np.array_equal(g_params[k], params[k]) for k in g_params)
    assert g_buffers and all(np.array_equal(g_buffers[k], buffers[k]) for k in g_buffers)
    write_native(params, buffers, spec, "flax", tmp_path / "gan.msgpack")
    params, buffers = to_canonical(read_native(tmp_path / "gan.msgpack"), spec)
    result = port(tmp_path / "gan.msgpack", spec, "keras", tmp_path / "gan.weights.h5")
    assert result.networks == ("generator", "discriminator")
    assert [a.network for a in result.agreement] == ["generator", "discriminator"]
    assert all(a.max_abs_diff < TOL for a in result.agreement), result.summary()
    params, buffers = to_canonical(read_native(tmp_path / "gan.weights.h5"), spec)
    write_native(params, buffers, spec, "torch", tmp_path / "back.pt")

    back = torch.load(tmp_path / "back.pt", map_location="cpu", weights_only=True)
    for net in ("generator", "discriminator"):
        assert list(back[net]) == list(original[net])  # the nn.Sequential keys, in its order
        for key, tensor in original[net].items():
            if not key.endswith("num_batches_tracked"):
                assert back[net][key].dtype == tensor.dtype and torch.equal(back[net][key], tensor), (net, key)
    agreement = verify(spec, params, buffers, "keras", "torch", tmp_path / "back.pt")
    assert all(a.max_abs_diff < TOL for a in agreement), [str(a) for a in agreement]


def test_generator_only_to_each_kind_and_back(tmp_path: Path) -> None:
    """A G-only tree written in each form, read back equal, and the written file run in its
    framework agrees with the NumPy reference."""
    require_backend("torch")
    spec = tiny()
    params = {k: v for k, v in init_params(spec, seed=5).items() if k.startswith("generator.")}
    kinds = {"torch": "g.pt", "safetensors": "g.safetensors"}
    if is_available("jax"):
        kinds["flax"] = "g.msgpack"
    if is_available("tensorflow"):
        kinds["keras"] = "g.weights.h5"
    for kind, name in kinds.items():
        write_native(params, None, spec, kind, tmp_path / name)
        back, buffers = to_canonical(read_native(tmp_path / name), spec)
        assert list(back) == list(params) and buffers == {}
        assert all(np.array_equal(back[k], params[k]) for k in params), kind
        (agreement,) = verify(spec, params, None, "safetensors", kind, tmp_path / name)
        assert agreement.network == "generator" and agreement.max_abs_diff < TOL, str(agreement)


def test_port_result_passes_within_1e_4_of_the_outputs_scale() -> None:
    """``worst`` is the largest diff relative to its row's outputs; exactly 1e-4 passes, above fails."""

    def result(*rows: tuple[float, float]) -> PortResult:
        agreement = [Agreement("generator", "torch", "flax", diff, scale) for diff, scale in rows]
        return PortResult({}, {}, ("generator",), [], agreement)

    assert result().worst == 0.0 and result().passed  # nothing verified (--no-verify)
    at_limit = result((1e-5, 0.5), (1e-4, 1.0))  # 2e-5 and exactly 1e-4
    assert at_limit.worst == 1e-4 and at_limit.passed
    above = result((1e-5, 0.5), (3.0e-4, 2.0))  # 2e-5 and 1.5e-4
    assert above.worst == pytest.approx(1.5e-4, rel=1e-12) and not above.passed
    zero_output = result((1e-13, 0.0))  # the scale is floored at 1e-12: 0.1
    assert zero_output.worst == pytest.approx(0.1) and not zero_output.passed


def test_cli_ports_a_tutorial_torch_generator_to_jax_and_keras(tmp_path):
    """As a new user: a plain nn.Sequential G saved with torch.save(state_dict), one command."""
    from typer.testing import CliRunner

    from gan_backends.cli import app

    for name in ("torch", "jax", "tensorflow"):
        require_backend(name)
    import torch
    from torch import nn

    widths = [100, 256, 512, 1024, 784]
    layers: list = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2) if i < 3 else nn.Tanh()]
    src = tmp_path / "generator.pth"
    torch.save(nn.Sequential(*layers).state_dict(), src)
    runner = CliRunner()
    for to, out in (("jax", "g.msgpack"), ("tensorflow", "g.weights.h5")):
        result = runner.invoke(app, ["port", str(src), "--spec", "mlp", "--to", to, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        assert "agreement: generator: max |torch - " in result.output and (tmp_path / out).exists()
    bad = runner.invoke(app, ["port", str(src), "--spec", "tiny", "--to", "jax", "--out", str(tmp_path / "x.msgpack")])
    assert bad.exit_code == 2 and "0.weight" in bad.output and "generator.0.kernel" in bad.output
