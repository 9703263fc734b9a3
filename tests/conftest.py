"""Test set-up: 8 simulated CPU devices, set before jax is imported."""

import os

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture
def fast_compile():
  """Skips most XLA optimisations where a test checks behaviour (a step
  runs, which counters are hashed), not the optimised program's numbers; it
  roughly halves compile time."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)
  # JAX's compilation caches do not key on this flag: without clearing them a
  # later test in the same worker would reuse these unoptimised executables
  # and see their (different) float rounding.
  jax.clear_caches()
