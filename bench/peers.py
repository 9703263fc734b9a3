"""Other CutMix implementations, measured when they can be imported.

None of these is a dependency of cutmix-jax; `pip install cutmix-jax[bench]`
lists them. A peer that is missing or fails is reported as skipped with the
reason, never as an error of the benchmark.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

# Keras 3 picks its backend at import; the comparison is on JAX.
os.environ.setdefault("KERAS_BACKEND", "jax")

Peer = tuple[str, str, Callable[[], Any], str]  # name, mode, call, note


def _torch_inputs(images: np.ndarray, labels: np.ndarray):
  import torch  # pylint: disable=g-import-not-at-top

  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  y = torch.from_numpy(labels.astype(np.int64))
  return torch, x, y


def _timm_mixup_class():
  """timm's `Mixup`; if `timm.data` can't import (it needs a torchvision
  that matches torch), its self-contained `timm/data/mixup.py` is loaded."""
  try:
    from timm.data import Mixup  # pylint: disable=g-import-not-at-top
    return Mixup, ""
  except ImportError as e:
    import importlib.util  # pylint: disable=g-import-not-at-top

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
      raise
    path = os.path.join(spec.submodule_search_locations[0], "data", "mixup.py")
    mod_spec = importlib.util.spec_from_file_location("_timm_mixup", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.Mixup, f"; timm/data/mixup.py loaded alone ({e.name} absent)"


def timm_peers(images, labels, num_classes) -> list[Peer]:
  Mixup, how = _timm_mixup_class()
  torch, x, y = _torch_inputs(images, labels)
  peers = []
  for mode in ("batch", "elem"):
    mixup = Mixup(
        mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.0,
        mode=mode, label_smoothing=0.0, num_classes=num_classes,
    )

    def call(mixup=mixup):
      with torch.no_grad():
        return mixup(x, y)  # in place on x, as timm does

    note = "eager torch, in place" + (
        ", Python loop over the batch" if mode == "elem" else ""
    ) + how
    peers.append((f"timm Mixup (cutmix)", mode, call, note))
  return peers


def torchvision_peers(images, labels, num_classes) -> list[Peer]:
  from torchvision.transforms import v2  # pylint: disable=g-import-not-at-top

  torch, x, y = _torch_inputs(images, labels)
  cutmix = v2.CutMix(num_classes=num_classes, alpha=1.0)

  def call():
    with torch.no_grad():
      return cutmix(x, y)

  return [("torchvision v2.CutMix", "batch", call, "eager torch, roll pairing")]


def keras_peers(images, labels, num_classes) -> list[Peer]:
  del labels, num_classes
  import keras  # pylint: disable=g-import-not-at-top

  if keras.backend.backend() != "jax":
    raise RuntimeError(f"Keras backend is {keras.backend.backend()}, not jax")
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  layer = keras.layers.CutMix(factor=1.0, seed=0)
  x = jnp.asarray(images)

  def call():
    return layer(x)  # eager: under plain jax.jit its randomness freezes

  return [("keras.layers.CutMix", "elem", call, "Keras 3 on JAX, eager call")]


def collect(images, labels, num_classes) -> tuple[list[Peer], list[str]]:
  """Every importable peer, and a reason for each one skipped."""
  peers, skipped = [], []
  for name, make in (
      ("timm", timm_peers),
      ("torchvision", torchvision_peers),
      ("keras", keras_peers),
  ):
    try:
      made = make(images, labels, num_classes)
      for peer in made:
        peer[2]()  # one call: fail here, not while timing
      peers.extend(made)
    except Exception as e:  # pylint: disable=broad-except
      skipped.append(f"{name}: {type(e).__name__}: {str(e)[:120]}")
  return peers, skipped
