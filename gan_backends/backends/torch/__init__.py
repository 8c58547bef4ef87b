"""PyTorch: ``nn.Module`` networks, ``torch.optim`` optimisers, the tutorial training loop.

The package's modules: ``layers`` (spec layer → ``nn.Module`` builder table), ``optim``,
``backend`` (:class:`TorchBackend`), ``cuda_graph`` (the captured whole step), ``parallel``
(``DistributedDataParallel``), ``checkpoint`` (``state_dict`` files; the user's module run for
port verification), ``losscheck`` (a user's loss under ``torch.autograd``). This file imports
no framework: it holds the manifest the rest of the suite reads.
"""

from __future__ import annotations

from ..manifest import CheckpointKind, Manifest

MANIFEST = Manifest(
    name="torch",
    package=__name__,
    backend="backend:TorchBackend",
    requires=("torch",),
    extra="torch",
    aliases=("pytorch",),
    layer_tables=("layers:LAYER_BUILDERS",),
    modes=("eager", "compile", "compile-cudagraphs", "cuda-graph"),
    # DDP hooks into eager modules.
    data_parallel_modes=("eager",),
    cuda_only_modes={
        "compile-cudagraphs": "CUDA graphs need a CUDA device",
        "cuda-graph": "CUDA graphs need a CUDA device",
    },
    checkpoint_kinds=(
        CheckpointKind(
            "torch",
            (".pt", ".pth", ".bin", ".ckpt", ".tar"),
            layout="torch",
            aliases=("pytorch",),
            suggested=(".pt", ".pth", ".bin"),
        ),
    ),
    framework_defaults={
        "leaky_relu_slope": 0.01,
        "adam_eps": 1e-8,
        "batchnorm": (0.1, 1e-5),
        "init": "torch_default",
        "bce": "BCELoss",
    },
    default_bce_ops="backend:TORCH_DEFAULT_BCE_OPS",
    gemm_peak="gemm:measure_gemm",
    model_modules=("torch",),
)
