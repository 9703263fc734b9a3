"""What the benchmark ran on: CPU, cores, device and library versions."""

from __future__ import annotations

import importlib
import os
import platform
import sys


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_info() -> dict:
  import jax  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  try:
    load = os.getloadavg()
  except OSError:
    load = None
  return {
      "cpu_model": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "cpus_usable": usable,
      "load_avg_at_start": list(load) if load else None,
      "platform": platform.platform(),
      "python": sys.version.split()[0],
      "jax_backend": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
  }


_LIBS = (
    "cutmix_jax", "jax", "jaxlib", "numpy", "flax", "optax",
    "torch", "torchvision", "timm", "keras",
)


def versions() -> dict:
  """Installed versions (from package metadata: a package that is installed
  but fails to import, like a timm whose torchvision is broken, still shows)."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top

  out = {}
  for name in _LIBS:
    try:
      out[name] = metadata.version(name.replace("_", "-"))
      continue
    except metadata.PackageNotFoundError:
      pass
    try:
      mod = importlib.import_module(name)
    except Exception:  # pylint: disable=broad-except  # absent or broken
      out[name] = None
      continue
    out[name] = getattr(mod, "__version__", "unknown")
  return out
