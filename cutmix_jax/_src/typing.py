"""The type aliases every module shares."""

from __future__ import annotations

from typing import Sequence, Union

import jax

# What the public functions take for an array: a `jax.Array`, a NumPy array
# or a Python or NumPy number.
ArrayLike = jax.typing.ArrayLike

# A mapped axis name (or names) of `shard_map` or `pmap`, or None.
AxisName = Union[str, Sequence[str], None]

# A ViT's patch size: an int, or `(ph, pw)`.
PatchSize = Union[int, tuple[int, int]]
