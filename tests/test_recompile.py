"""A jitted op or sampler compiles once, whatever the key, alpha or prob of
each call.

Over 100 calls with changing keys (and, for the traced arguments, changing
alpha and prob), the number of compilations must be exactly 1: counted both
by the jitted function's own cache and by JAX's backend-compile events.
"""

import jax
from jax import monitoring
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cm

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_events: list[str] = []
_registered = False


def _listen():
  global _registered
  if not _registered:
    monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: _events.append(name))
    _registered = True


def _ops(num_classes):
  return {
      "cutmix": lambda k, x, y, a, p, mode: cm.cutmix(
          k, x, y, num_classes=num_classes, alpha=a, prob=p, mode=mode),
      "mixup": lambda k, x, y, a, p, mode: cm.mixup(
          k, x, y, num_classes=num_classes, alpha=a, prob=p, mode=mode),
      "mix": lambda k, x, y, a, p, mode: cm.mix(
          k, x, y, num_classes=num_classes, mixup_alpha=a, cutmix_alpha=a,
          switch_prob=p, prob=p, mode=mode),
      "cutout": lambda k, x, y, a, p, mode: cm.cutout(k, x, prob=p, mode=mode),
      "resizemix": lambda k, x, y, a, p, mode: cm.resizemix(
          k, x, y, num_classes=num_classes, prob=p, mode=mode),
      "switch": lambda k, x, y, a, p, mode: cm.switch(
          k, x, y, num_classes=num_classes, cutmix_alpha=a, mixup_alpha=a,
          probs={"cutmix": p, "mixup": 1 - p, "cutout": a, "resizemix": p},
          prob=p, mode=mode),
      "sample_fmix": lambda k, x, y, a, p, mode: cm.sample_fmix(
          k, *x.shape[:3], alpha=a, prob=p, mode=mode),
      "sample_multibox": lambda k, x, y, a, p, mode: cm.sample_multibox(
          k, *x.shape[:3], n_boxes=2, prob=p, mode=mode),
      "sample_cutmix_cuboid": lambda k, x, y, a, p, mode: (
          cm.sample_cutmix_cuboid(k, x.shape[0], 4, *x.shape[1:3], alpha=a,
                                  prob=p, mode=mode)),
      "apply_tree": lambda k, x, y, a, p, mode: cm.apply_tree(
          cm.sample_mix(k, *x.shape[:3], mixup_alpha=a, cutmix_alpha=a,
                        switch_prob=p, prob=p, mode=mode),
          {"image": x, "seg": x[..., 0].astype(jnp.int32)}),
      "mix_boxes": lambda k, x, y, a, p, mode: cm.mix_boxes(
          cm.sample_cutmix(k, *x.shape[:3], alpha=a, prob=p, mode=mode),
          *_boxes(x.shape[0])),
  }


def _boxes(batch):
  """Two boxes per image: (top, left, bottom, right), classes, valid."""
  boxes = jnp.tile(jnp.array([[0, 0, 4, 4], [2, 3, 8, 7]]), (batch, 1, 1))
  return boxes, jnp.ones((batch, 2), jnp.int32), jnp.ones((batch, 2), bool)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix", "cutout",
                                "resizemix", "switch", "sample_fmix",
                                "sample_multibox", "sample_cutmix_cuboid",
                                "apply_tree", "mix_boxes"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_compiles_once_over_100_calls(op, mode):
  _listen()
  num_classes, calls = 10, 100
  fn = jax.jit(_ops(num_classes)[op], static_argnames="mode")
  x = jnp.asarray(
      np.random.default_rng(0).integers(1, 256, (8, 8, 8, 3), np.uint8))
  y = jnp.arange(8) % num_classes
  # Inputs are made before counting: creating them compiles small programs.
  keys = list(jax.random.split(jax.random.key(0), calls))
  alphas = [jnp.float32(a) for a in np.linspace(0.2, 2.0, calls)]
  probs = [jnp.float32(p) for p in np.linspace(0.1, 1.0, calls)]
  jax.block_until_ready((keys, alphas, probs, x, y))
  _events.clear()
  outs = [fn(keys[i], x, y, alphas[i], probs[i], mode=mode)
          for i in range(calls)]
  jax.block_until_ready(outs)
  assert fn._cache_size() == 1  # pylint: disable=protected-access
  assert _events.count(_COMPILE_EVENT) == 1
  # The keys do change the draw: not every output is the same.
  first = np.asarray(jax.tree.leaves(outs[0])[0])
  assert any(not np.array_equal(first, np.asarray(jax.tree.leaves(o)[0]))
             for o in outs[1:])


@pytest.mark.parametrize("applier", ["apply_params", "apply_tree",
                                     "mix_labels", "mix_boxes"])
def test_appliers_compile_once_over_new_draws(applier):
  """Draws made outside `jit` are inputs: their static fields must not vary
  with the key, or every new draw would recompile the applier."""
  _listen()
  calls = 20
  x = jnp.asarray(
      np.random.default_rng(0).integers(1, 256, (8, 8, 8, 3), np.uint8))
  # Fresh functions: `jax.jit` of one function object shares its cache with
  # every other test that jitted it.
  fn = jax.jit({
      "apply_params": lambda p, x: cm.apply_params(p, x),
      "apply_tree": lambda p, x: cm.apply_tree(
          p, {"image": x, "seg": x[..., 0].astype(jnp.int32)}),
      "mix_labels": lambda p, x: cm.mix_labels(p, jnp.arange(8),
                                               num_classes=8),
      "mix_boxes": lambda p, x: cm.mix_boxes(p, *_boxes(8)),
  }[applier])
  probs = {"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0}
  draws = [cm.sample_switch(k, 8, 8, 8, probs=probs, prob=0.5, mode="elem")
           for k in jax.random.split(jax.random.key(0), calls)]
  jax.block_until_ready((draws, x))
  _events.clear()
  jax.block_until_ready([fn(p, x) for p in draws])
  assert fn._cache_size() == 1  # pylint: disable=protected-access
  assert _events.count(_COMPILE_EVENT) == 1
