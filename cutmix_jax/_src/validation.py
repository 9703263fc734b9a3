"""Trace-time argument checks.

Everything here looks only at static information (shapes, dtypes, Python
numbers), so it runs once while tracing and costs nothing in the compiled step.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

def describe(x: Any) -> str:
  """A short 'shape dtype' description of an argument for error messages."""
  shape = getattr(x, "shape", None)
  dtype = getattr(x, "dtype", None)
  if shape is None:
    return f"{type(x).__name__} {x!r}"
  return f"shape {tuple(shape)} dtype {dtype}"


def check_key(key: Any, name: str = "key") -> None:
  """Accepts a typed PRNG key or a legacy uint32[2] key; rejects the rest."""
  dtype = getattr(key, "dtype", None)
  shape = getattr(key, "shape", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    if shape != ():
      raise ValueError(
          f"{name} must be a single PRNG key (shape ()), got {describe(key)}; "
          "split it or vmap over it instead."
      )
    return
  if dtype == jnp.uint32 and shape == (2,):
    return
  raise TypeError(
      f"{name} must be a PRNG key from jax.random.key(seed) (or a legacy "
      f"uint32[2] jax.random.PRNGKey), got {describe(key)}. The key is the "
      "first positional argument."
  )


def is_static_number(x: Any) -> bool:
  """True for Python and NumPy scalars, whose value is known at trace time."""
  if isinstance(x, (numbers.Number, np.generic)):
    return True
  return isinstance(x, np.ndarray) and x.ndim == 0


def check_scalar(x: Any, name: str) -> None:
  if not is_static_number(x) and jnp.ndim(x) != 0:
    raise ValueError(f"{name} must be a scalar, got {describe(x)}.")


def check_positive(x: Any, name: str, *, allow_zero: bool = False) -> None:
  """Rejects a static non-positive value; traced values are checked at run time."""
  check_scalar(x, name)
  if is_static_number(x):
    value = float(x)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not np.isfinite(value):
      bound = ">= 0" if allow_zero else "> 0"
      raise ValueError(f"{name} must be finite and {bound}, got {value}.")


def check_probability(x: Any, name: str) -> None:
  check_scalar(x, name)
  if is_static_number(x) and not 0.0 <= float(x) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {float(x)}.")


def check_range(value: Any, name: str, lo: float,
                hi: float) -> tuple[float, float]:
  """A static pair `(a, b)` with `lo <= a <= b <= hi`, as floats."""
  try:
    a, b = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(
        f"{name} must be a pair (lo, hi) of floats, got {value!r}.") from None
  if not lo <= a <= b <= hi:
    raise ValueError(
        f"{name} must satisfy {lo} <= lo <= hi <= {hi}, got {value!r}.")
  return a, b


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def check_size(value: Any, name: str) -> int:
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
    raise TypeError(
        f"{name} must be a static Python int, got {type(value).__name__} "
        f"{value!r}."
    )
  if value < 1:
    raise ValueError(f"{name} must be >= 1, got {value}.")
  return int(value)


def parse_layout(layout: Any, ndim: int, name: str) -> tuple[int, int]:
  """Returns the (height, width) axes of an array with the given layout.

  A layout is a string of distinct axis letters that starts with the batch
  axis 'N' and has the spatial axes adjacent as 'HW', for example 'NHWC',
  'NCHW', 'NHW' or the video layout 'NTHWC'. Axes other than N, H and W (such
  as channels and time) share the box of their sample.
  """
  if (
      not isinstance(layout, str)
      or not layout.startswith("N")
      or "HW" not in layout
      or len(set(layout)) != len(layout)
  ):
    raise ValueError(
        "layout must be a string of distinct axis letters starting with 'N' "
        "and containing 'HW' (for example 'NHWC', 'NCHW', 'NHW' or 'NTHWC'), "
        f"got {layout!r}."
    )
  if len(layout) != ndim:
    raise ValueError(
        f"{name} has rank {ndim} but layout {layout!r} expects rank "
        f"{len(layout)}. Pass layout= to describe its axes (for example "
        "'NCHW' for channel-first, 'NTHWC' for video)."
    )
  h_axis = layout.index("H")
  return h_axis, h_axis + 1


def check_images(images: Any, layout: str, name: str = "images"):
  """Returns (batch, height, width, h_axis) for an image batch."""
  if not hasattr(images, "shape") or not hasattr(images, "dtype"):
    raise TypeError(f"{name} must be an array, got {type(images).__name__}.")
  dtype = images.dtype
  if not (
      jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)
  ):
    raise TypeError(f"{name} must have a numeric dtype, got {dtype}.")
  h_axis, w_axis = parse_layout(layout, images.ndim, name)
  shape = images.shape
  if any(s == 0 for s in shape):
    raise ValueError(f"{name} must not be empty, got {describe(images)}.")
  return shape[0], shape[h_axis], shape[w_axis], h_axis


def check_labels(
    labels: Any, batch_size: int, num_classes: int | None, name: str = "labels"
) -> int:
  """Validates labels against the image batch; returns the number of classes."""
  if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
    raise TypeError(f"{name} must be an array, got {type(labels).__name__}.")
  if num_classes is not None:
    num_classes = check_size(num_classes, "num_classes")
  if labels.ndim == 0 or labels.shape[0] != batch_size:
    raise ValueError(
        f"{name} has {describe(labels)} but images have batch size "
        f"{batch_size}; expected [batch] integer class ids or [batch, "
        "num_classes] float targets."
    )
  if labels.ndim == 1:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise TypeError(
          f"{name} of rank 1 must hold integer class ids, got {describe(labels)}."
          " Float targets must be [batch, num_classes]."
      )
    if num_classes is None:
      raise ValueError(
          f"integer {name} ({describe(labels)}) need num_classes= to be "
          "one-hot encoded."
      )
    return num_classes
  if labels.ndim == 2:
    if not jnp.issubdtype(labels.dtype, jnp.floating):
      raise TypeError(
          f"{name} of rank 2 must be float [batch, num_classes] targets, got "
          f"{describe(labels)}."
      )
    if num_classes is not None and labels.shape[1] != num_classes:
      raise ValueError(
          f"{name} has {labels.shape[1]} classes ({describe(labels)}) but "
          f"num_classes={num_classes}."
      )
    return labels.shape[1]
  raise ValueError(
      f"{name} must be [batch] integer ids or [batch, num_classes] floats, got "
      f"{describe(labels)}."
  )
