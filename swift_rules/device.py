"""Which variant of a stage runs here: GPU when usable (or asked for), CPU otherwise.

The probe first asks the CUDA driver through ctypes, so that a machine without a
GPU never imports CuPy: only where the driver reports a device is CuPy imported
to prove that memory can really be allocated.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

from swift_rules.registry import RegistryError, Stage

CHOICES = ("auto", "cpu", "gpu")
ENV_VAR = "SWIFT_RULES_DEVICE"


class DeviceError(RegistryError):
    """A device was asked for that this machine or stage cannot give."""


@dataclass(frozen=True)
class Choice:
    device: str  # "cpu" or "gpu"
    reason: str


def _driver_device_count() -> tuple[int, str]:
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.cuInit(0) != 0:
            return 0, "the CUDA driver failed to initialise"
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0, "the CUDA driver could not count devices"
        return count.value, f"the CUDA driver sees {count.value} device(s)"
    return 0, "no CUDA driver (libcuda) on this machine"


@functools.lru_cache(maxsize=None)  # noqa: UP033 - REANA 0.9 parses with Python 3.8
def gpu_status() -> tuple[bool, str]:
    """(usable, why): whether a CUDA device can actually run a GPU variant here."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False, f"CUDA_VISIBLE_DEVICES={visible!r} hides every device"
    count, why = _driver_device_count()
    if count == 0:
        return False, why
    try:
        import cupy

        cupy.zeros(1).sum().item()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except ImportError:
        return False, f"{why}, but CuPy is not installed"
    except Exception as err:  # any CUDA runtime failure means "not usable"
        return False, f"{why}, but it is not usable: {err}"
    return True, f"CUDA device 0 is usable ({name})"


def requested_device(configured: str | None) -> tuple[str, str]:
    """The device asked for: the environment variable overrides the config."""
    env = os.environ.get(ENV_VAR)
    if env:
        value, origin = env.strip().lower(), f"environment variable {ENV_VAR}"
    else:
        value, origin = (configured or "auto"), "config"
    if value not in CHOICES:
        raise DeviceError(f"device {value!r} (from {origin}) is not one of {list(CHOICES)}")
    return value, origin


def choose(stage: Stage, configured: str | None = None) -> Choice:
    """Pick the variant of ``stage`` to run on this machine, with the reason."""
    wanted, origin = requested_device(configured)
    has = stage.variants
    if wanted == "cpu":
        if "cpu" not in has:
            raise DeviceError(f"stage {stage.name!r} has no CPU variant (cpu asked by {origin})")
        return Choice("cpu", f"cpu asked by {origin}")
    if wanted == "gpu":
        if "gpu" not in has:
            raise DeviceError(f"stage {stage.name!r} has no GPU variant (gpu asked by {origin})")
        usable, why = gpu_status()
        if not usable:
            raise DeviceError(f"gpu asked by {origin} for {stage.name!r}, but {why}")
        return Choice("gpu", f"gpu asked by {origin}; {why}")
    if "gpu" not in has:
        return Choice("cpu", "auto: no GPU variant registered")
    usable, why = gpu_status()
    if usable:
        return Choice("gpu", f"auto: {why}")
    if "cpu" not in has:
        raise DeviceError(f"stage {stage.name!r} has only a GPU variant, and {why}")
    return Choice("cpu", f"auto: {why}")


def possible_devices(stage: Stage, configured: str | None = None) -> list[str]:
    """The variants a job might run, without probing: for cache fingerprints.

    Jobs may run on other machines than the one that plans the workflow, so
    ``auto`` counts every registered variant.
    """
    wanted, origin = requested_device(configured)
    if wanted == "auto":
        return sorted(stage.variants)
    if wanted not in stage.variants:
        raise DeviceError(
            f"stage {stage.name!r} has no {wanted.upper()} variant ({wanted} asked by {origin})"
        )
    return [wanted]
