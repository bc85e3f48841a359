"""Where medsynth computes, and how reproducibly: the device rule, the deterministic mode and the
record of the compute environment. Bottom layer: it imports only :mod:`medsynth.errors`.

- :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a ``torch.device``
  (``auto``: CUDA when a GPU is visible, else the CPU) and refuses, with one clear line, a device
  this machine does not have.
- :func:`deterministic_mode` is the ``deterministic`` setting of ``train`` and ``generate``:
  PyTorch's deterministic algorithms (an op without one raises instead of running), cuDNN
  deterministic and not benchmarking, TF32 off for matmuls and convolutions, and the cuBLAS
  workspace that cuBLAS needs for reproducible results (``CUBLAS_WORKSPACE_CONFIG=:4096:8``; it
  must be set before the first cuBLAS call of the process: the mode sets it when it is not set,
  which is early enough for the commands; a notebook that already used the GPU must set it in its
  environment before starting).
  What holds where (PyTorch's reproducibility notes): on the CPU results are bitwise repeatable
  with or without it; on a GPU without it they are close, not bitwise (TF32 convolutions are
  PyTorch's default for cuDNN, and some backward kernels accumulate with atomics); with it they
  are bitwise repeatable on the same GPU model, driver and library versions. CPU and GPU results
  are never bitwise equal.
- :func:`compute_environment` is what a model card, a checkpoint and a manifest record about the
  machine; :func:`environment_differences` says whether a resume would mix two environments.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any, Iterator

import torch

from medsynth.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
#: The cuBLAS workspace setting PyTorch asks for when deterministic algorithms are on.
CUBLAS_WORKSPACE = ":4096:8"
#: Facts of :func:`compute_environment` that change computed numbers: a resume across any of them mixes
#: results of two environments. The CPU model is recorded but not compared (it rarely changes results
#: and clusters mix CPU models freely).
RESUME_KEYS = ("device", "gpu", "torch", "cuda", "cudnn", "tf32_matmul", "tf32_cudnn", "deterministic")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` that ``device`` names on this machine.

    Args:
        device: ``"auto"`` or None (CUDA when a GPU is visible, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a ``torch.device``.

    Raises:
        ConfigError: an unknown name, or a device this machine lacks (CUDA asked for on a machine
            without a visible GPU or with a CPU-only PyTorch build, a GPU index out of range).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip().lower())
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"unknown device {device!r}; use {DEVICE_CHOICES}") from e
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r} asked for, but CUDA is not available here ({_why_no_cuda()}); "
                              "use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {str(device)!r} asked for, but this machine has {count} visible GPU(s) "
                              f"(cuda:0 to cuda:{count - 1})")
        return dev
    if dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {str(device)!r} asked for, but Apple's MPS is not available here")
        return dev
    raise ConfigError(f"unsupported device {str(device)!r}; use {DEVICE_CHOICES}")


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"PyTorch {torch.__version__} is a CPU-only build"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and not hidden.strip():
        return "CUDA_VISIBLE_DEVICES is empty"
    return f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"


def process_device(device: torch.device, local_rank: int) -> torch.device:
    """The device of process ``local_rank`` of a multi-process run that asked for ``device``: each
    process takes its own GPU (``cuda:local_rank``, wrapping around); the CPU stays the CPU.

    Raises:
        ConfigError: ``device`` names one GPU (``cuda:N``), which several processes cannot share.
    """
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(f"device {device} names one GPU, but this run has several processes; use --device cuda "
                          "(each process takes its own GPU) or auto")
    return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))


# ---------------------------------------------------------------------------------------- TF32 and determinism
def _fp32_precision_api() -> bool:
    """Whether this PyTorch has the per-backend ``fp32_precision`` flags (2.9+). Mixing them with the
    legacy ``allow_tf32`` flags raises, so only one of the two is ever used."""
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv")


def tf32_state() -> dict[str, bool]:
    """Whether float32 matmuls and cuDNN convolutions may use TF32 (PyTorch's defaults: matmul off,
    convolutions on)."""
    matmul = torch.get_float32_matmul_precision() != "highest"
    if _fp32_precision_api():
        conv = torch.backends.cudnn.conv.fp32_precision
        if conv in ("tf32", "ieee"):
            return {"tf32_matmul": matmul, "tf32_cudnn": conv == "tf32"}
    try:
        return {"tf32_matmul": matmul, "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}
    except RuntimeError:  # legacy and new flags were mixed by someone else: report the conservative value
        return {"tf32_matmul": matmul, "tf32_cudnn": True}


def _tf32_flags() -> dict[str, Any]:
    if _fp32_precision_api():
        return {"matmul": torch.backends.cuda.matmul.fp32_precision,
                "conv": torch.backends.cudnn.conv.fp32_precision,
                "rnn": torch.backends.cudnn.rnn.fp32_precision}
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


def _set_tf32_flags(flags: dict[str, Any]) -> None:
    if _fp32_precision_api():
        torch.backends.cuda.matmul.fp32_precision = flags["matmul"]
        torch.backends.cudnn.conv.fp32_precision = flags["conv"]
        torch.backends.cudnn.rnn.fp32_precision = flags["rnn"]
    else:
        torch.backends.cuda.matmul.allow_tf32 = flags["matmul"]
        torch.backends.cudnn.allow_tf32 = flags["cudnn"]


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 for float32 matmuls and cuDNN convolutions inside the block; the
    previous flags come back afterwards (benchmarks compare true fp32 with PyTorch's defaults)."""
    saved = _tf32_flags(), torch.get_float32_matmul_precision()
    if _fp32_precision_api():
        value = "tf32" if enabled else "ieee"
        _set_tf32_flags({"matmul": value, "conv": value, "rnn": value})
    else:
        _set_tf32_flags({"matmul": enabled, "cudnn": enabled})
    try:
        yield
    finally:
        _set_tf32_flags(saved[0])
        if torch.get_float32_matmul_precision() != saved[1]:
            torch.set_float32_matmul_precision(saved[1])


@contextlib.contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    """Run the block with PyTorch's deterministic settings (a no-op when ``enabled`` is false):
    ``torch.use_deterministic_algorithms(True)``, ``cudnn.deterministic``, no cuDNN benchmarking,
    TF32 off, and ``CUBLAS_WORKSPACE_CONFIG`` set when it is not. The previous settings come back
    afterwards (the environment variable stays: cuBLAS reads it once per process).
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        with tf32_mode(False):
            yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


# ---------------------------------------------------------------------------------------- the CPU
def _cpuinfo() -> str:
    """/proc/cpuinfo, or "" where there is none (not Linux): every caller then falls back."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX flags in /proc/cpuinfo). Without it
    bf16 autocast is emulated and ~30x slower than fp32; with it a 64 px training step is ~1.5x faster."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_mixed_precision(value: str, device_type: str | None = None) -> str:
    """``"auto"`` as this machine should run it: bf16 on a CUDA GPU that supports it and on a CPU with
    native bf16, else fp32 ("no"); any other value is returned as given."""
    if value != "auto":
        return value
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_native_bf16() else "no"


# ---------------------------------------------------------------------------------------- environment record
def _cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def compute_environment(device: torch.device | str, deterministic: bool = False) -> dict[str, Any]:
    """The compute environment of a run on ``device``: what a model card, a checkpoint and a
    manifest record (plain JSON values).

    Keys: ``device`` (cpu, cuda, mps), ``gpu`` (the GPU's name, None on the CPU), ``cpu`` (the CPU
    model), ``torch``, ``cuda`` and ``cudnn`` (the versions PyTorch was built with and loads, None
    when absent), ``tf32_matmul`` and ``tf32_cudnn`` (whether TF32 is allowed, as in effect when
    called; None off CUDA), ``deterministic`` (the setting the run used).
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    gpu = None
    if dev.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(dev)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    # TF32 is a property of CUDA kernels: on another device it changes nothing and is not recorded.
    tf32 = tf32_state() if dev.type == "cuda" else {"tf32_matmul": None, "tf32_cudnn": None}
    return {
        "device": dev.type,
        "gpu": gpu,
        "cpu": _cpu_model(),
        "torch": str(torch.__version__),  # a TorchVersion object would not load with weights_only=True
        "cuda": torch.version.cuda,
        "cudnn": None if cudnn is None else str(cudnn),
        **tf32,
        "deterministic": bool(deterministic),
    }


def environment_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The :data:`RESUME_KEYS` on which two environments differ (none when ``old`` is unknown)."""
    if not old:
        return []
    return [k for k in RESUME_KEYS if k in old and old.get(k) != new.get(k)]


def describe_environment(env: dict[str, Any] | None) -> str:
    """One line for messages and cards: ``cuda (NVIDIA H200), torch 2.13.0, CUDA 12.8, TF32 off, deterministic``."""
    if not env:
        return "an unrecorded environment"
    where = env.get("device", "?")
    if env.get("gpu"):
        where += f" ({env['gpu']})"
    parts = [where, f"torch {env.get('torch')}"]
    if env.get("device") == "cuda":
        parts.append(f"CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}")
        tf32 = [name for name, key in (("matmul", "tf32_matmul"), ("conv", "tf32_cudnn")) if env.get(key)]
        parts.append(f"TF32 {'+'.join(tf32) if tf32 else 'off'}")
    parts.append("deterministic" if env.get("deterministic") else "not deterministic")
    return ", ".join(parts)


def resume_refusal(old: dict[str, Any] | None, new: dict[str, Any], what: str) -> str | None:
    """The message refusing to resume ``what`` in environment ``new`` when it was started in ``old``;
    None when nothing that changes results differs."""
    diff = environment_differences(old, new)
    if not diff:
        return None
    return (f"{what} was made on {describe_environment(old)}; this run is on {describe_environment(new)} "
            f"({', '.join(diff)} differ): resuming would mix results of two environments. Pass --force-resume "
            "(force_resume=True) to continue anyway; the record then lists both")
