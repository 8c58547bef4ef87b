"""torch's devices and precision: the device a backend runs on, as named by the user, and TF32
switched from the spec (process-wide in torch)."""

from __future__ import annotations

import torch

from ...errors import DeviceUnavailable, parse_device
from ...spec import GANSpec


def select_device(requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, index = parse_device(requested)
    if kind == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (index or 0) >= count:
        build = " (a CPU-only build of torch)" if torch.version.cuda is None else ""
        raise DeviceUnavailable(f"device {requested!r}: torch sees {count} CUDA device(s){build}")
    return torch.device("cuda") if index is None else torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def apply_precision(spec: GANSpec) -> None:
    """TF32 on or off for matmuls and cuDNN convs, from the spec (process-wide in torch)."""
    tf32 = spec.numerics.matmul_precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
