"""Each framework backend against independent float64 computations.

- float64, tiny spec: gradients against central finite differences of the NumPy forward pass
  (no backward code shared with anything), and training steps against the NumPy reference's
  hand-written Adam, to float64 precision.
- float32, the real ``mlp`` preset: forward, losses and gradients against the float64
  reference within float32 tolerances.
"""

import numpy as np
import pytest
from numeric import central_difference, to_bf16

from gan_backends import get_preset, init_params
from gan_backends.backends import TrainBatch, get_backend
from gan_backends.backends.numpy.backend import NumpyReference
from gan_backends.check import compare, tolerance
from gan_backends.presets import LOSS_PRESETS


def rel(a, b):
    return compare(a, b)[0]


def draw(rng, spec, batch=6, n_critic=None):
    n = spec.n_critic if n_critic is None else n_critic
    return TrainBatch(
        real=rng.uniform(-1, 1, (n, batch, *spec.data_shape)),
        z_d=rng.standard_normal((n, batch, spec.latent_dim)),
        z_g=rng.standard_normal((batch, spec.latent_dim)),
        alpha=rng.uniform(0, 1, (n, batch)) if spec.loss.penalty == "wgan_gp" else None,
    )


@pytest.mark.parametrize("loss", LOSS_PRESETS)
def test_float64_gradients_match_finite_differences(framework, loss, rng):
    """Every loss of the zoo; for the penalties the D gradient is second order (through the
    input gradient), held against finite differences of the reference's penalty value."""
    spec = get_preset("tiny", dtype="float64", loss=loss, d_scale=0.5)
    params = init_params(spec, 4)
    real, z, alpha = rng.uniform(-1, 1, (6, 12)), rng.standard_normal((6, 8)), rng.uniform(0, 1, 6)
    backend = get_backend(framework)(spec, params)
    _, grads = backend.gradients(real, z, alpha)
    for name, grad in grads.items():
        which = "d_loss" if name.startswith("discriminator") else "g_loss"
        for flat in rng.choice(grad.size, size=min(5, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            fd = central_difference(
                lambda p, w=which: NumpyReference(spec, p).loss_terms(real, z, alpha)[w], params, name, index
            )
            assert grad[index] == pytest.approx(fd, rel=1e-6, abs=1e-9), (name, index)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_float64_training_matches_reference(framework, n_critic, rng):
    spec = get_preset("tiny", dtype="float64").replace(n_critic=n_critic)
    params = init_params(spec, 9)
    backend = get_backend(framework)(spec, params)
    ref = NumpyReference(spec, params)
    for _ in range(4):
        batch = draw(rng, spec)
        terms, ref_terms = backend.train_step(batch), ref.train_step(batch)
        for key in ref_terms:
            assert terms[key] == pytest.approx(ref_terms[key], rel=1e-12), key
    got, want = backend.get_params(), ref.get_params()
    for name in want:
        assert rel(got[name], want[name]) < 1e-12, name
        assert not np.array_equal(want[name], params[name]), f"{name} did not train"


def test_weight_decay_is_torch_l2(framework, rng):
    """Adam(weight_decay) in torch's sense: wd * p added to the gradient (not decoupled)."""
    spec = get_preset("tiny", dtype="float64")
    spec = spec.replace(
        g_optimizer=spec.g_optimizer.__class__(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1)
    )
    params = init_params(spec, 1)
    backend, ref = get_backend(framework)(spec, params), NumpyReference(spec, params)
    for _ in range(3):
        batch = draw(rng, spec)
        backend.train_step(batch)
        ref.train_step(batch)
    got, want = backend.get_params(), ref.get_params()
    assert max(rel(got[k], want[k]) for k in want) < 1e-12


@pytest.fixture(scope="module")
def mlp_case():
    spec = get_preset("mlp")
    rng = np.random.default_rng(0)
    params = init_params(spec, 0)
    real = rng.uniform(-1, 1, (32, 784)).astype(np.float32)
    z = rng.standard_normal((32, 100)).astype(np.float32)
    ref = NumpyReference(spec, params)
    return spec, params, real, z, ref, ref.gradients(real, z)


def test_float32_mlp_against_reference(framework, mlp_case):
    spec, params, real, z, ref, (ref_terms, ref_grads) = mlp_case
    tol = tolerance("float32", "float64", "highest")
    backend = get_backend(framework)(spec, params, device="cpu")
    fake = backend.generate(z)
    assert fake.dtype == np.float32 and fake.shape == (32, 784)
    assert rel(fake, ref.generate(z)) < tol.value
    assert rel(backend.discriminate(real), ref.discriminate(real)) < tol.value
    terms, grads = backend.gradients(real, z)
    assert terms == pytest.approx(ref_terms, rel=tol.loss)
    assert backend.loss_terms(real, z) == pytest.approx(ref_terms, rel=tol.loss)
    for name, grad in ref_grads.items():
        assert grads[name].dtype == np.float32
        assert rel(grads[name], grad) < tol.grad, name


def test_bad_batch_shape_is_named(framework):
    spec = get_preset("tiny")
    backend = get_backend(framework)(spec, init_params(spec))
    bad = TrainBatch(
        real=np.zeros((1, 4, 11), np.float32), z_d=np.zeros((1, 4, 8), np.float32), z_g=np.zeros((4, 8), np.float32)
    )
    with pytest.raises(ValueError, match=r"TrainBatch.real: expected shape \(1, 4, 12\).*got \(1, 4, 11\)"):
        backend.train_step(bad)


def test_unknown_mode_is_named(framework):
    spec = get_preset("tiny")
    with pytest.raises(ValueError, match="has no mode 'warp'"):
        get_backend(framework)(spec, init_params(spec), mode="warp")


NON_DEFAULT_MODES = {"torch": ["compile"], "tensorflow": ["xla", "eager"], "jax": ["eager"]}


@pytest.mark.slow
@pytest.mark.xdist_group("torch-compile")  # one worker pays inductor's start-up
def test_every_mode_agrees_with_reference(framework, rng):
    spec = get_preset("tiny", dtype="float64")
    params = init_params(spec, 3)
    batch = draw(rng, spec)
    real, z = batch.real[0], batch.z_g
    ref = NumpyReference(spec, params)
    _, ref_grads = ref.gradients(real, z)
    ref.train_step(batch)
    for mode in NON_DEFAULT_MODES[framework]:
        backend = get_backend(framework)(spec, params, mode=mode)
        assert rel(backend.generate(z), NumpyReference(spec, params).generate(z)) < 1e-12, mode
        _, grads = backend.gradients(real, z)
        assert max(rel(grads[k], ref_grads[k]) for k in grads) < 1e-12, mode
        backend.train_step(batch)
        got = backend.get_params()
        assert max(rel(got[k], ref.params[k]) for k in got) < 1e-12, mode


def test_activations_match_reference_layer_by_layer(framework, rng):
    spec = get_preset("tiny", dtype="float64")
    params = init_params(spec, 5)
    ref = NumpyReference(spec, params)
    backend = get_backend(framework)(spec, params)
    inputs = {"generator": rng.standard_normal((5, spec.latent_dim)), "discriminator": rng.uniform(-1, 1, (5, 12))}
    for net, x in inputs.items():
        got, want = backend.activations(net, x), ref.activations(net, x)
        assert len(got) == len(want) == len(spec.layers(net))
        for i, (a, b) in enumerate(zip(got, want)):
            assert a.shape == b.shape and rel(a, b) < 1e-13, (net, i)
    # The last activation is the network's output.
    np.testing.assert_array_equal(
        backend.activations("generator", inputs["generator"])[-1], backend.generate(inputs["generator"])
    )


def test_optimizer_state_moves_between_backends(framework, rng):
    """Reference trains 3 steps; its state loaded into a backend continues the same trajectory:
    step 4 from it equals the reference's step 4 (so moments, step count and layouts are right)."""
    spec = get_preset("tiny", dtype="float64", g_hidden=(16, 16))
    params = init_params(spec, 6)
    batches = [draw(rng, spec) for _ in range(4)]
    ref = NumpyReference(spec, params)
    backend = get_backend(framework)(spec, params)
    assert backend.get_optimizer_state().steps == {"generator": 0, "discriminator": 0}
    for batch in batches[:3]:
        ref.train_step(batch)
    state = ref.get_optimizer_state()
    backend.set_params(ref.get_params())
    backend.set_optimizer_state(state)
    back = backend.get_optimizer_state()
    assert back.steps == {"generator": 3, "discriminator": 3}
    for slot in ("m", "v"):
        assert set(back.slots[slot]) == set(params)
        for name, value in state.slots[slot].items():
            np.testing.assert_array_equal(back.slots[slot][name], value, err_msg=f"{slot} {name}")
    kept = {slot: {k: v.copy() for k, v in tree.items()} for slot, tree in state.slots.items()}
    ref.train_step(batches[3])
    backend.train_step(batches[3])
    got, want = backend.get_params(), ref.get_params()
    assert max(rel(got[k], want[k]) for k in want) < 1e-12
    # The state handed in is the caller's: stepping must not write into it (torch's
    # load_state_dict kept from_numpy tensors sharing its memory, and lock-step hands one state
    # to every backend in turn).
    for slot, tree in kept.items():
        for name, value in tree.items():
            np.testing.assert_array_equal(state.slots[slot][name], value, err_msg=f"{slot} {name} was written")
    # Torch's step count after its own step must read 4, whatever type it keeps it in.
    assert backend.get_optimizer_state().steps == {"generator": 4, "discriminator": 4}


def test_to_bf16_by_hand():
    assert to_bf16(np.float32(1.0 + 2**-8))[()] == 1.0  # a tie: to even
    assert to_bf16(np.float32(1.0 + 3 * 2**-8))[()] == 1.0 + 2**-6  # a tie: to even (up)
    assert to_bf16(np.float32(1.0 + 2**-8 + 2**-12))[()] == 1.0 + 2**-7


def test_bf16_matmul_is_the_spec_semantics(framework, rng):
    """Dense in ``bf16`` mode: bf16(bf16(x) @ bf16(W)) + b in float32, as emulated in NumPy."""
    spec = get_preset("tiny", g_hidden=(64,))
    spec = spec.replace(numerics=spec.numerics.__class__(dtype="float32", matmul_precision="bf16"))
    params = init_params(spec, 8)
    z = rng.standard_normal((32, spec.latent_dim)).astype(np.float32)
    kernel, bias = params["generator.0.kernel"], params["generator.0.bias"]
    exact = z.astype(np.float64) @ kernel.astype(np.float64) + bias
    emulated = to_bf16((to_bf16(z).astype(np.float64) @ to_bf16(kernel).astype(np.float64)).astype(np.float32)) + bias
    got = get_backend(framework)(spec, params).activations("generator", z)[0]
    assert got.dtype == np.float32
    assert rel(got, emulated) < 2e-4  # only a rare product rounding differs (accumulation order)
    assert rel(got, exact) > 1e-3  # and bf16 really was applied


def test_bf16_needs_float32():
    from gan_backends.spec import Numerics, SpecError

    with pytest.raises(SpecError, match="mixed precision over float32"):
        Numerics(dtype="float64", matmul_precision="bf16")
