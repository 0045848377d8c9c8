"""Device choice: CUDA when present, else CPU; ``--device cpu|cuda`` forces it."""

from __future__ import annotations

import torch

from .params import ParamError


class DeviceError(ParamError):
    """The device asked for does not exist here."""


def resolve_device(name: str | None = None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or None (auto: CUDA when present)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: CUDA is not available on this machine (torch "
                              f"{torch.__version__}, no GPU found); use --device cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    raise DeviceError(f"--device must be cpu or cuda, got {name!r}")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def use_triton(device: torch.device) -> bool:
    """Triton kernels run on CUDA devices; the CPU path uses their PyTorch twins."""
    return device.type == "cuda" and has_triton()
