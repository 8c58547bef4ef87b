"""Conv layers, BatchNorm, the loss zoo and the optimisers at the spec level: shapes and padding
against TensorFlow's and PyTorch's documented formulas, validation messages, penalty values by hand."""

import math

import numpy as np
import pytest

from gan_backends import GANSpec, SpecError, get_preset
from gan_backends.losses import NUMPY_OPS, discriminator_loss, generator_loss, gradient_penalty
from gan_backends.params import buffer_shapes, init_buffers, init_params, param_shapes
from gan_backends.presets import LOSS_PRESETS, with_loss
from gan_backends.spec import (
    AdamSpec,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Flatten,
    LossSpec,
    RMSpropSpec,
    SGDSpec,
    optimizer_slots,
)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 28])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_conv_is_tensorflows_formula(size, kernel, stride):
    # TF's conv 'SAME' (tensorflow/core/framework/kernel_shape_util.cc): out = ceil(in / s),
    # pad_total = max((out - 1) * s + k - in, 0), pad_before = pad_total // 2.
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    layer = Conv2D(filters=2, kernel=kernel, stride=stride, padding="same")
    assert layer.pads((size, size, 1)) == ((total // 2, total - total // 2),) * 2
    assert layer.output_shape((size, size, 1)) == (out, out, 2)


def test_stride_two_same_with_odd_kernel_pads_the_extra_pixel_after():
    # The trap: torch's symmetric padding=1 for k=3, s=2 on an even input starts the window
    # one pixel earlier than TF's 'same', which pads (0, 1).
    layer = Conv2D(filters=1, kernel=3, stride=2, padding="same")
    assert layer.pads((8, 8, 1)) == ((0, 1), (0, 1))
    assert Conv2D(filters=1, kernel=3, stride=2, padding=1).pads((8, 8, 1)) == ((1, 1), (1, 1))


TRANSPOSE_CASES = [
    (size, kernel, stride, padding)
    for size in (1, 4, 7)
    for kernel in (1, 2, 3, 4, 5)
    for stride in (1, 2, 3)
    for padding in ("same", "valid", 0, 1, 2)
    # an int padding that crops every output pixel away is refused, not a size to check
    if not (isinstance(padding, int) and (size - 1) * stride + kernel - 2 * padding <= 0)
]


@pytest.mark.parametrize("size, kernel, stride, padding", TRANSPOSE_CASES)
def test_conv_transpose_output_sizes(size, kernel, stride, padding):
    layer = ConvTranspose2D(filters=3, kernel=kernel, stride=stride, padding=padding)
    if padding == "same":  # Keras Conv2DTranspose: out = in * s
        expected = size * stride
    elif padding == "valid":  # Keras: in * s + max(k - s, 0)
        expected = size * stride + max(kernel - stride, 0)
    else:  # torch: (in - 1) s - 2p + k
        expected = (size - 1) * stride - 2 * padding + kernel
    assert layer.output_shape((size, size, 2)) == (expected, expected, 3)


def test_conv_transpose_same_with_odd_k_minus_s_is_not_torchs_padding_plus_output_padding():
    # The common port ConvTranspose2d(5, 2, padding=2, output_padding=1) has the right size but
    # crops (2, 1); TF/Keras 'same' crops (1, 2): one pixel shifted.
    same = ConvTranspose2D(filters=1, kernel=5, stride=2, padding="same")
    port = ConvTranspose2D(filters=1, kernel=5, stride=2, padding=2, output_padding=1)
    assert same.output_shape((7, 7, 1)) == port.output_shape((7, 7, 1)) == (14, 14, 1)
    assert same.crops((7, 7, 1)) == ((1, 2), (1, 2))
    assert port.crops((7, 7, 1)) == ((2, 1), (2, 1))


def test_canonical_kernel_shapes():
    assert Conv2D(filters=8, kernel=4).param_shapes((16, 16, 3)) == {"kernel": (4, 4, 3, 8), "bias": (8,)}
    assert ConvTranspose2D(filters=8, kernel=4, use_bias=False).param_shapes((4, 4, 3)) == {"kernel": (4, 4, 8, 3)}
    assert BatchNorm().param_shapes((4, 4, 5)) == {"scale": (5,), "bias": (5,)}
    assert BatchNorm().buffer_shapes((7,)) == {"running_mean": (7,), "running_var": (7,)}


@pytest.mark.parametrize(
    "layer, message",
    [
        (lambda: Conv2D(filters=1, kernel=3, padding="full"), "padding must be an int >= 0, 'same' or 'valid'"),
        (
            lambda: ConvTranspose2D(filters=1, kernel=4, stride=2, output_padding=2),
            r"output_padding .* \[0, stride=2\)",
        ),
        (lambda: ConvTranspose2D(filters=1, kernel=4, stride=2, padding="same", output_padding=1), "needs an int"),
        (lambda: BatchNorm(momentum=0.99 + 1), "weight of the new batch statistic"),
        (lambda: BatchNorm(running_var="sample"), "'unbiased' or 'biased'"),
    ],
)
def test_bad_layer_fields_are_named(layer, message):
    with pytest.raises(SpecError, match=message):
        layer()


def test_conv_on_a_flat_input_names_the_layer():
    spec = get_preset("dcgan-small")
    with pytest.raises(SpecError, match=r"discriminator layer 1 Conv2D.*expects an image \(H, W, C\), got \(256,\)"):
        spec.replace(discriminator=(Flatten(), *spec.discriminator))


@pytest.mark.parametrize("name, size", [("dcgan", 64), ("dcgan-28", 28), ("dcgan-32", 32), ("dcgan-small", 16)])
def test_dcgan_presets_follow_radford(name, size):
    spec = get_preset(name)
    assert spec.data_shape[:2] == (size, size)
    assert [s[1] for s in spec.layer_shapes("discriminator")][-1] == (1,)
    layers = spec.generator + spec.discriminator
    # No bias right before a BatchNorm; LeakyReLU 0.2 in D; ReLU in G; tanh out.
    for prev, layer in zip(layers, layers[1:]):
        if isinstance(layer, BatchNorm):
            assert not prev.use_bias
    assert type(spec.generator[-1]).__name__ == "Tanh"
    assert {layer.slope for layer in spec.discriminator if hasattr(layer, "slope")} == {0.2}
    assert spec.init.scheme == "normal" and spec.init.std == 0.02


def test_dcgan_64_has_the_papers_parameter_count():
    # G 3,576,704 and D 2,765,568 parameters: the counts printed by the PyTorch DCGAN tutorial's
    # models (nz=100, ngf=ndf=64, nc=3), BatchNorm scale and bias included.
    shapes = param_shapes(get_preset("dcgan"))
    count = {
        net: sum(math.prod(s) for n, s in shapes.items() if n.startswith(net)) for net in ("generator", "discriminator")
    }
    assert count == {"generator": 3_576_704, "discriminator": 2_765_568}


def test_penalty_drops_batchnorm_from_the_dcgan_critic_and_is_refused_with_it():
    for loss in ("wgan-gp", "r1"):
        spec = get_preset("dcgan-small", loss=loss)
        assert not any(isinstance(layer, BatchNorm) for layer in spec.discriminator)
        assert all(layer.use_bias for layer in spec.discriminator if isinstance(layer, Conv2D))
    with pytest.raises(SpecError, match=r"discriminator layer 3 BatchNorm.*gradient penalty \(wgan_gp\)"):
        with_loss(get_preset("dcgan-small"), "wgan-gp")


def test_loss_presets_carry_their_papers_training():
    wgan = get_preset("dcgan-small", loss="wgan")
    assert wgan.loss.clip_value == 0.01 and wgan.n_critic == 5
    assert isinstance(wgan.d_optimizer, RMSpropSpec) and wgan.d_optimizer.lr == 5e-5
    gp = get_preset("mlp", loss="wgan-gp")
    assert (gp.loss.penalty, gp.loss.penalty_weight, gp.n_critic) == ("wgan_gp", 10.0, 5)
    assert (gp.g_optimizer.lr, gp.g_optimizer.beta1, gp.g_optimizer.beta2) == (1e-4, 0.0, 0.9)
    assert set(LOSS_PRESETS) >= {"minimax", "non_saturating", "least_squares", "hinge", "wgan", "wgan-gp", "r1"}


@pytest.mark.parametrize("loss", list(LOSS_PRESETS))
def test_every_loss_preset_round_trips_through_json(loss):
    spec = get_preset("dcgan-small", loss=loss)
    assert GANSpec.from_json(spec.to_json()) == spec


def test_optimizer_specs_round_trip_and_validate():
    spec = get_preset("tiny").replace(
        g_optimizer=SGDSpec(lr=0.1, momentum=0.9, nesterov=True),
        d_optimizer=RMSpropSpec(lr=1e-3, centered=True, momentum=0.5),
    )
    assert GANSpec.from_json(spec.to_json()) == spec
    assert optimizer_slots(spec.g_optimizer) == ("momentum",)
    assert optimizer_slots(spec.d_optimizer) == ("v", "grad_avg", "momentum")
    assert optimizer_slots(AdamSpec(lr=1, beta1=0, beta2=0, eps=1)) == ("m", "v")
    assert optimizer_slots(SGDSpec(lr=1.0)) == ()
    with pytest.raises(SpecError, match="nesterov needs momentum"):
        SGDSpec(lr=0.1, nesterov=True)
    with pytest.raises(SpecError, match="unknown optimiser 'adagrad'"):
        GANSpec.from_dict({**spec.to_dict(), "g_optimizer": {"name": "adagrad", "lr": 1.0}})


def test_wasserstein_terms_by_hand():
    real, fake = np.array([[2.0], [-1.0]]), np.array([[0.5], [1.5]])
    terms = discriminator_loss(NUMPY_OPS, real, fake, LossSpec(name="wasserstein"))
    assert terms["d_real"] == -0.5 and terms["d_fake"] == 1.0 and terms["d_loss"] == 0.5
    assert generator_loss(NUMPY_OPS, fake, LossSpec(name="wasserstein")) == -1.0


def test_gradient_penalties_by_hand():
    sq = np.array([0.0, 4.0, 0.25])  # norms 0, 2, 0.5
    gp = LossSpec(name="wasserstein", penalty="wgan_gp", penalty_weight=10.0, norm_eps=0.0)
    assert gradient_penalty(NUMPY_OPS, sq, gp) == pytest.approx(10.0 * (1.0 + 1.0 + 0.25) / 3, rel=1e-15)
    r1 = LossSpec(penalty="r1", penalty_weight=2.0)
    assert gradient_penalty(NUMPY_OPS, sq, r1) == pytest.approx(1.0 * (0 + 4 + 0.25) / 3, rel=1e-15)
    r1_half = LossSpec(d_scale=0.5, penalty="r1", penalty_weight=2.0)
    terms = discriminator_loss(NUMPY_OPS, np.zeros((3, 1)), np.zeros((3, 1)), r1_half, 0.75)
    assert terms["d_penalty"] == 0.75 and terms["d_loss"] == pytest.approx(0.5 * 2 * math.log(2) + 0.75)
    # Without a penalty in the spec, the penalty argument is not part of d_loss.
    plain = discriminator_loss(NUMPY_OPS, np.zeros((3, 1)), np.zeros((3, 1)), LossSpec(d_scale=0.5), 0.0)
    assert plain["d_loss"] == pytest.approx(0.5 * 2 * math.log(2))


def test_conv_init_fans_follow_torch():
    spec = get_preset("dcgan-small").replace(init=get_preset("tiny").init)  # torch_default
    params = init_params(spec, 0)
    # Conv2d weight (out, in, k, k): fan_in = in * k * k. ConvTranspose2d weight (in, out, k, k):
    # torch's fan_in is dim 1 * k * k = out * k * k (a known torch quirk the canonical layout keeps).
    conv = params["discriminator.2.kernel"]  # (4, 4, 8, 16)
    convt = params["generator.4.kernel"]  # (4, 4, 8, 16): out=8, in=16
    assert conv.shape == (4, 4, 8, 16) and convt.shape == (4, 4, 8, 16)
    assert np.abs(conv).max() <= 1 / math.sqrt(8 * 16) and np.abs(conv).max() > 0.95 / math.sqrt(8 * 16)
    assert np.abs(convt).max() <= 1 / math.sqrt(8 * 16)
    bn = init_params(get_preset("dcgan-small"), 0)["generator.2.scale"]
    assert abs(bn.mean() - 1.0) < 0.05 and 0.0 < bn.std() < 0.05  # DCGAN: N(1, 0.02)
    buffers = init_buffers(get_preset("dcgan-small"))
    assert set(buffers) == set(buffer_shapes(get_preset("dcgan-small")))
    assert all((v == (1.0 if k.endswith("running_var") else 0.0)).all() for k, v in buffers.items())
