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


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the slow mark
def pytest_collection_modifyitems(items):
  """`@pytest.mark.quick_every(n)` keeps every n-th case of a parametrized
  test in the quick subset and marks the others slow: the multi-device and
  stream families compile once per case, and a sample of them catches most
  regressions while iterating. CI and command 2 run every case."""
  seen = {}
  for item in items:
    marker = item.get_closest_marker("quick_every")
    if marker is None:
      continue
    family = (item.path, item.originalname)
    index = seen[family] = seen.get(family, -1) + 1
    if index % marker.args[0]:
      item.add_marker(pytest.mark.slow)
