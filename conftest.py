"""Doctest namespace: the library's examples use `jax` and `jnp` unimported."""

import pytest


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  doctest_namespace["jax"] = jax
  doctest_namespace["jnp"] = jnp
