"""Golden draws: every sampler and applier bit for bit as in 0.2.0.

`tests/golden/draws.npz` holds the outputs of `tests/golden/make.py` on
0.2.0's code: every public sampler across modes, pairings, options,
invariant and traced numbers, under `shard_map` with `axis_name` and
`cross_device`, and the appliers on a fixed float32 and uint8 batch. A
refactor must leave every array equal. A deliberate stream change
regenerates the file (`python -m tests.golden.make`) and says so in the
CHANGELOG.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "golden_make", pathlib.Path(__file__).parent / "golden" / "make.py")
make = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(make)


@pytest.fixture(scope="module")
def golden():
  with np.load(make.PATH) as f:
    return {k: f[k] for k in f.files}


# Each group is one large compiled program (tens of seconds on 2 cores).
@pytest.mark.slow
@pytest.mark.parametrize("group", make.GROUPS)
def test_outputs_equal_the_golden_draws(golden, group):
  expected = {k: v for k, v in golden.items() if k.startswith(group + "/")}
  assert expected, f"no golden arrays for group {group!r}"
  got = make.generate([group])
  assert sorted(got) == sorted(expected)
  differ = [k for k in expected
            if got[k].dtype != expected[k].dtype
            or not np.array_equal(got[k], expected[k], equal_nan=True)]
  assert not differ, f"{len(differ)} arrays differ, e.g. {differ[:5]}"
