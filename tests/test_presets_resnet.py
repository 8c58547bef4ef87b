"""The ResNet presets: SNGAN's CIFAR networks counted by hand from the paper's table, and the
CPU-test SAGAN (every block kind, spectral norm, attention) agreeing with the float64 reference
in each stack, lock-step included."""

from __future__ import annotations

import pytest

from gan_backends import get_preset
from gan_backends.check import run_check
from gan_backends.params import buffer_shapes, param_shapes
from gan_backends.spec import AdamSpec, Conv2D, Dense, Residual, SelfAttention, SpecError, walk


def _count(shapes: dict) -> int:
    total = 0
    for shape in shapes.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def test_sngan_32_has_the_papers_networks_and_training():
    """Miyato et al. 2018, table 4 (CIFAR-10 ResNet), counted by hand. G: Dense 128 -> 4·4·256
    (128·4096 + 4096); three up-blocks of 256 channels, each 2 BatchNorms (4·256), two 3×3 convs
    (2·9·256²) and a 1×1 shortcut (256²), all without bias; BatchNorm(256) and a 3×3 conv to 3
    (9·256·3 + 3).
    D (128 channels): the optimised block 3×3 3->128, 3×3, 1×1 3->128 (9·3·128 + 128 + 9·128² +
    128 + 3·128 + 128); a down-block and two plain blocks: 2 × (9·128² + 128) each, the down-block
    with a 1×1 (128² + 128); Dense 128 -> 1 (129)."""
    spec = get_preset("sngan-32")
    up_block = 2 * 2 * 256 + 2 * 9 * 256**2 + 256**2  # no biases: BatchNorm cancels them all
    g = 128 * 4096 + 4096 + 3 * up_block + 2 * 256 + 9 * 256 * 3 + 3
    # Mimicry's SNGANGenerator32 has 4,276,739 with a bias on each of the blocks' 9 convs.
    d = (9 * 3 * 128 + 128) + (9 * 128**2 + 128) + (3 * 128 + 128)
    d += 3 * 2 * (9 * 128**2 + 128) + (128**2 + 128) + 129
    shapes = param_shapes(spec)
    assert _count({k: v for k, v in shapes.items() if k.startswith("generator.")}) == g == 4_276_739 - 9 * 256
    assert _count({k: v for k, v in shapes.items() if k.startswith("discriminator.")}) == d
    assert spec.data_shape == (32, 32, 3) and spec.latent_dim == 128
    assert spec.loss.name == "hinge" and spec.n_critic == 5
    assert spec.g_optimizer == spec.d_optimizer == AdamSpec(lr=2e-4, beta1=0.0, beta2=0.9, eps=1e-8)
    normed = [layer for _, layer, _ in walk(spec.discriminator, spec.data_shape, "discriminator")]
    weighted = [layer for layer in normed if isinstance(layer, (Conv2D, Dense))]
    assert len(weighted) == 11 and all(layer.spectral_norm is not None for layer in weighted)
    assert sum(isinstance(layer, Residual) for layer in spec.discriminator) == 4
    # Every spectrally normalised layer carries its u and v: 11 pairs (3 + 3 + 2 + 2 + 1).
    assert sum(name.endswith(".sn_u") for name in buffer_shapes(spec)) == 11


def test_sagan_32_adds_attention_at_16x16_in_both_networks():
    spec = get_preset("sagan-32")
    for net in ("generator", "discriminator"):
        layers = spec.layers(net)
        shapes = spec.layer_shapes(net)
        (i,) = [k for k, layer in enumerate(layers) if isinstance(layer, SelfAttention)]
        assert shapes[i][0][:2] == (16, 16)
        assert layers[i].key_channels == shapes[i][0][2] // 8


def test_a_penalty_on_the_spectrally_normalised_critic_is_refused_by_name():
    with pytest.raises(SpecError, match="spectral"):
        get_preset("sngan-small", loss="wgan-gp")


@pytest.mark.long
def test_sagan_small_agrees_with_the_reference_lock_step(framework):
    """Up-blocks with BatchNorm, the optimised and identity D blocks, spectral norm's u/v, the
    attention of both networks and hinge with n_critic 5: two steps free-running and lock-step.
    TensorFlow runs eagerly (tracing these graphs in tf.function takes most of the test; its
    compiled modes are checked on the smaller presets); JAX jits, which here is twice as fast as
    its op-by-op eager mode (36 s against 70 s, measured on this CPU)."""
    modes = {"tensorflow": "eager"}
    spec = get_preset("sagan-small", n_critic=2)  # n_critic itself is checked on the wgan presets
    report = run_check(spec, [framework, "numpy"], steps=2, batch_size=8, modes=modes)
    failed = [(p.a, p.b, r.quantity, r.rel) for p in report.pairs for r in p.rows if not r.passed]
    assert report.passed, failed
