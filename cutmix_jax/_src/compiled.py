"""Public entry points run as one compiled call, eagerly too.

A sampler is a few hundred small array ops. Eagerly JAX dispatches them one
by one, and an eager `shard_map` even compiles each on its own (tens of
seconds a draw); under `jax.jit` they are traced once. `compiled` runs the
whole function under `jax.jit`, with its arrays traced and every other
argument (Python or NumPy numbers, strings) static, so a static option stays
static and validation raises at trace time as before. Under a user's `jit`
the inner `jit` is inlined: the compiled program is the same.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from cutmix_jax._src import prng


class _Static:
  """A static leaf, equal only to a leaf of the same type and value, so that
  `1`, `1.0`, `True` and `np.float32(1)` do not share a trace."""

  def __init__(self, value):
    self.value = value

  def __eq__(self, other):
    return (isinstance(other, _Static)
            and type(self.value) is type(other.value)
            and bool(self.value == other.value))

  def __hash__(self):
    return hash((type(self.value), self.value))


_TRACED = object()


def _split(tree):
  """`((treedef, static leaves), traced leaves)`, or None if not possible."""
  try:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
  except TypeError:  # a dict with unsortable keys
    return None
  spec, traced = [], []
  for leaf in leaves:
    if isinstance(leaf, jax.Array) or (
        isinstance(leaf, np.ndarray) and leaf.ndim):
      spec.append(_TRACED)
      traced.append(leaf)
    elif isinstance(leaf, np.ndarray):
      return None
    else:
      spec.append(_Static(leaf))
  spec = (treedef, tuple(spec))
  try:
    hash(spec)
  except TypeError:
    return None
  return spec, traced


def compiled(fn):
  """`fn` as one `jax.jit` call; arrays traced, other leaves static.

  Calls `fn` directly when a leaf can be neither (a 0-d NumPy array, which
  the checks read as a static number; an unhashable object), and while
  `prng.record_hashes` records, which needs a fresh trace.
  """

  @functools.partial(jax.jit, static_argnums=0)
  def run(spec, traced):
    treedef, leaves = spec
    traced = iter(traced)
    args, kwargs = treedef.unflatten(
        [next(traced) if leaf is _TRACED else leaf.value for leaf in leaves])
    return fn(*args, **kwargs)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    if prng.recording():
      return fn(*args, **kwargs)
    spec = _split((args, kwargs))
    if spec is None:
      return fn(*args, **kwargs)
    return run(*spec)

  return wrapper
