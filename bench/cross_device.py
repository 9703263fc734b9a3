"""The cost of cross-device pairing, on simulated (or real) devices.

Run as its own process, because the number of simulated CPU devices must be
set before JAX starts: `python -m bench.cross_device` prints JSON rows;
`python -m bench` runs it and merges the rows. Inside `shard_map`, each op is
timed with pairs kept inside the shard (no communication) and with
`cross_device=True` ('flip': every shard swaps its whole batch by one
`lax.ppermute`; 'roll': one sample per shard moves), against a `shard_map`
copy of the same batch. On simulated CPU devices a ppermute is a memory
copy, so these ratios show the extra data movement, not a real interconnect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if __name__ == "__main__":
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + " --xla_force_host_platform_device_count=8").strip()

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

import cutmix_jax as cm
from bench import timing

VARIANTS = (
    ("inside each shard", {}),
    ("cross_device flip", {"cross_device": True, "pairing": "flip"}),
    ("cross_device roll", {"cross_device": True, "pairing": "roll"}),
)


def measure(shape, dtype, ops, reps, target_ms):
  devices = jax.device_count()
  mesh = jax.make_mesh((devices,), ("data",))
  batch = NamedSharding(mesh, P("data"))
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=shape, dtype=np.uint8)
  if dtype != "uint8":
    x = (x / 255.0).astype(dtype)
  x = jax.device_put(x, batch)
  y = jax.device_put(np.arange(shape[0], dtype=np.int32) % 10, batch)
  keys = list(jax.random.split(jax.random.key(0), 64))
  counter = iter(range(10**9))

  def mapped(fn):
    return jax.jit(jax.shard_map(
        fn, mesh=mesh, in_specs=(P(), P("data"), P("data")),
        out_specs=(P("data"), P("data"))))

  copy = mapped(lambda k, x, y: (lax.rev(x, (0,)), y))
  fns, meta = {}, {}
  for op in ops:
    for label, kwargs in VARIANTS:
      f = mapped(lambda k, x, y, op=op, kwargs=kwargs: getattr(cm, op)(
          k, x, y, num_classes=10, mode="elem", axis_name="data", **kwargs))
      name = f"{op}/{label}"
      fns[name] = lambda f=f: f(keys[next(counter) % 64], x, y)
      meta[name] = (op, label)
  base, timed, failed = timing.interleaved(
      lambda: copy(keys[0], x, y), fns, reps=reps, target_s=target_ms / 1e3)
  shape_text = "x".join(map(str, shape))
  note = f"shard_map over {devices} {jax.devices()[0].platform} devices"
  rows = [dict(section="cross-device", name="shard_map batch copy "
               "(denominator)", mode="-", dtype=dtype, shape=shape_text,
               note=note, **base.summary())]
  for name, t in timed.items():
    op, label = meta[name]
    rows.append(dict(section="cross-device", name=f"{op}, {label}",
                     mode="elem", dtype=dtype, shape=shape_text, note=note,
                     **t.summary()))
  for name, error in failed.items():
    op, label = meta[name]
    rows.append(dict(section="cross-device", name=f"{op}, {label}",
                     mode="elem", dtype=dtype, shape=shape_text, ratio=None,
                     note=f"FAILED: {error}"))
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench.cross_device")
  p.add_argument("--shape", default="256x32x32x3",
                 help="global NHWC batch, BxHxWxC")
  p.add_argument("--dtype", default="float32")
  p.add_argument("--ops", nargs="+", default=["cutmix", "mixup"])
  p.add_argument("--reps", type=int, default=9)
  p.add_argument("--target-ms", type=float, default=20.0)
  args = p.parse_args(argv)
  shape = tuple(int(v) for v in args.shape.split("x"))
  rows = measure(shape, args.dtype, args.ops, args.reps, args.target_ms)
  json.dump(rows, sys.stdout)
  return 0


if __name__ == "__main__":
  sys.exit(main())
