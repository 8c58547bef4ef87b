"""The ResNet GANs people train and port since 2018: SNGAN (Miyato et al. 2018) and SAGAN
(Zhang et al. 2019) at CIFAR-10 size, with CPU-test variants.

``sngan-32`` is the CIFAR-10 ResNet of Miyato et al. (appendix B, table 4), as the public ports
write it (Mimicry's ``SNGANGenerator32``/``SNGANDiscriminator32``, PyTorch-StudioGAN's
``resnet`` CIFAR config):

- G: z (128) -> Dense(4·4·256) -> three up-blocks of 256 channels -> BatchNorm, ReLU,
  Conv3×3(3), tanh. An up-block is ``BN, ReLU, Upsample×2, Conv3×3, BN, ReLU, Conv3×3`` with
  the shortcut ``Upsample×2, Conv1×1`` (learnable: the block changes the shape).
- D: every convolution and the last Dense spectrally normalised (one power iteration,
  eps 1e-12: torch's ``spectral_norm``). An *optimised* first block
  ``Conv3×3, ReLU, Conv3×3, AvgPool2`` with shortcut ``AvgPool2, Conv1×1``; a down-block
  ``ReLU, Conv3×3, ReLU, Conv3×3, AvgPool2`` with shortcut ``Conv1×1, AvgPool2``; two blocks
  ``ReLU, Conv3×3, ReLU, Conv3×3`` with the identity shortcut; then ReLU, the sum over
  positions (``torch.sum(h, dim=(2, 3))``) and Dense(1).
- Hinge loss, Adam(2e-4, β = (0, 0.9), eps 1e-8) for both, n_critic 5.

G's block convolutions have no biases (the ports keep them). In training mode each is dead: a
per-channel constant added to a block's input is cancelled by the BatchNorm that opens its main
branch and passes its shortcut (nearest upsampling, a 1×1 conv) as another per-channel
constant, down to G's final BatchNorm, which cancels it. Their gradient is rounding noise that
Adam turns into ±lr steps no two stacks share (a check of sngan-32 with them fails on it).
The attention's 1×1 convolutions have none either, as in BigGAN-PyTorch and StudioGAN.
Upsampling is nearest, as in the authors' Chainer code (``unpooling_2d``) and StudioGAN
(Mimicry uses bilinear: ``upsample="bilinear"`` gives that). Initialisation is the spec's
``glorot_uniform`` for every kernel (the authors' code: Glorot-uniform with gain √2 in the blocks'
3×3 convolutions, 1 elsewhere; a gain is not a spec option), biases 0.

``sagan-32`` is the same networks and training with SAGAN's self-attention block
(:class:`~gan_backends.spec.SelfAttention`, key channels C/8, value C, γ starting at 0) after
G's second up-block (16×16) and after D's first block (16×16). SAGAN puts spectral norm on the
attention's 1×1 convolutions too; the spec's SelfAttention does not carry spectral norm yet, so
they are plain here.
"""

from __future__ import annotations

from .spec import (
    AdamSpec,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    GANSpec,
    GlobalSumPool,
    InitSpec,
    Layer,
    Numerics,
    ReLU,
    Reshape,
    Residual,
    SelfAttention,
    SpecError,
    SpectralNormSpec,
    Tanh,
    Upsample,
)


def sngan_adam() -> AdamSpec:
    """SNGAN's Adam for both networks (Miyato et al. 2018, the ResNet runs: α 2e-4, β1 0, β2 0.9)."""
    return AdamSpec(lr=2e-4, beta1=0.0, beta2=0.9, eps=1e-8)


def _sn() -> SpectralNormSpec:
    return SpectralNormSpec(n_power_iterations=1, eps=1e-12)


def _conv(filters: int, kernel: int) -> Conv2D:
    return Conv2D(filters=filters, kernel=kernel, stride=1, padding=(kernel - 1) // 2, spectral_norm=_sn())


def _up_block(channels: int, upsample: str) -> Residual:
    up = Upsample(factor=2, method=upsample)  # type: ignore[arg-type]
    conv = lambda k: Conv2D(filters=channels, kernel=k, stride=1, padding=(k - 1) // 2, use_bias=False)  # noqa: E731
    bn = BatchNorm(momentum=0.1, eps=1e-5)
    # No biases: BatchNorm cancels every one of them in training (the module docstring).
    return Residual(main=(bn, ReLU(), up, conv(3), bn, ReLU(), conv(3)), shortcut=(up, conv(1)))


def _down_block(channels: int, *, first: bool, downsample: bool) -> Residual:
    pool = AvgPool2D(pool=2)
    if first:  # Miyato et al.'s "optimized" block: no ReLU on the image, pool before the 1×1
        main = (_conv(channels, 3), ReLU(), _conv(channels, 3), pool)
        return Residual(main=main, shortcut=(pool, _conv(channels, 1)))
    plain: tuple[Layer, ...] = (ReLU(), _conv(channels, 3), ReLU(), _conv(channels, 3))
    if not downsample:
        return Residual(main=plain)  # same shape: the identity shortcut
    return Residual(main=(*plain, pool), shortcut=(_conv(channels, 1), pool))


def sngan(
    *,
    image_size: int = 32,
    channels: int = 3,
    latent_dim: int = 128,
    g_features: int = 256,
    d_features: int = 128,
    d_plain_blocks: int = 2,
    attention: bool = False,
    upsample: str = "nearest",
    loss: str = "hinge",
    d_scale: float = 1.0,
    n_critic: int | None = None,
    dtype: str = "float32",
    name: str = "sngan-32",
) -> GANSpec:
    """SNGAN's CIFAR-10 ResNet (Miyato et al. 2018): spectrally normalised D, hinge, n_critic 5.

    See the module docstring. ``image_size = 4·2ⁿ`` gives n up-blocks in G and, in D, the
    optimised block, n − 2 down-blocks and ``d_plain_blocks`` blocks at that size.
    ``attention`` adds SAGAN's self-attention at 16×16 (at half the image size on smaller
    images: before G's last up-block, after D's first block)."""
    from .presets import _with_loss  # the loss presets; presets imports this module's factories

    n = 0
    while 4 * 2 ** (n + 1) <= image_size:
        n += 1
    if n < 1 or 4 * 2**n != image_size:
        raise SpecError(f"sngan needs an image size of 4·2ⁿ with n ≥ 1 (8, 16, 32, 64...), got {image_size}")
    attend_at = min(16, image_size // 2)

    generator: list[Layer] = [Dense(units=4 * 4 * g_features), Reshape(shape=(4, 4, g_features))]
    size = 4
    for _ in range(n):
        if attention and size == attend_at:
            generator.append(SelfAttention(key_channels=max(g_features // 8, 1), use_bias=False))
        generator.append(_up_block(g_features, upsample))
        size *= 2
    generator += [BatchNorm(momentum=0.1, eps=1e-5), ReLU(), Conv2D(filters=channels, kernel=3, padding=1), Tanh()]

    discriminator: list[Layer] = [_down_block(d_features, first=True, downsample=True)]
    if attention:
        discriminator.append(SelfAttention(key_channels=max(d_features // 8, 1), use_bias=False))
    discriminator += [_down_block(d_features, first=False, downsample=True) for _ in range(n - 2)]
    discriminator += [_down_block(d_features, first=False, downsample=False) for _ in range(d_plain_blocks)]
    discriminator += [ReLU(), GlobalSumPool(), Dense(units=1, spectral_norm=_sn())]

    kwargs = dict(
        name=name,
        data_shape=(image_size, image_size, channels),
        latent_dim=latent_dim,
        generator=tuple(generator),
        discriminator=tuple(discriminator),
        g_optimizer=sngan_adam(),
        d_optimizer=sngan_adam(),
        numerics=Numerics(dtype=dtype),  # type: ignore[arg-type]
        init=InitSpec(scheme="glorot_uniform"),
        n_critic=5,
    )
    return GANSpec(**_with_loss(kwargs, loss, d_scale, n_critic))


def sngan_small(**overrides) -> GANSpec:
    """SNGAN at 8×8×3, 16 channels, a 16-d latent: every block kind at CPU-test speed.

    One up-block in G; the optimised block and one identity block in D."""
    kwargs = dict(image_size=8, latent_dim=16, g_features=16, d_features=16, d_plain_blocks=1, name="sngan-small")
    return sngan(**{**kwargs, **overrides})


def sagan(**overrides) -> GANSpec:
    """SNGAN's ResNet with SAGAN's self-attention (Zhang et al. 2019) at 16×16 in G and D."""
    return sngan(**{"attention": True, "name": "sagan-32", **overrides})


def sagan_small(**overrides) -> GANSpec:
    """sngan-small with self-attention at 4×4 in G (before its up-block) and in D."""
    return sngan_small(**{"attention": True, "name": "sagan-small", **overrides})


RESNET_PRESETS = {"sngan-32": sngan, "sngan-small": sngan_small, "sagan-32": sagan, "sagan-small": sagan_small}
