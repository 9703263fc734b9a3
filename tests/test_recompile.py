"""A jitted op compiles once, whatever the key, alpha or prob of each call.

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
  }


@pytest.mark.parametrize("op", ["cutmix", "mixup", "mix", "cutout"])
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
