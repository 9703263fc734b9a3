"""Golden draws: every sampler's and applier's output on fixed inputs.

`generate()` returns `{name: array}` for a fixed set of cases; `draws.npz`
holds its output on 0.2.0's code. `tests/test_golden.py` compares the two
bit for bit, so a refactor that changes any draw, pixel or label fails.
Regenerate (only for an intended, CHANGELOG-listed stream change) with

    python -m tests.golden.make

which writes `tests/golden/draws.npz` (8 simulated CPU devices are set up
here, as in `conftest.py`).
"""

import dataclasses
import functools
import os
import pathlib

import numpy as np

PATH = pathlib.Path(__file__).with_name("draws.npz")

B, T, H, W = 8, 4, 8, 8
SHARDS = 4  # cross_device and axis_name cases: 2 samples per shard


def _draw_arrays(draw):
  """A draw's (or any pytree's) arrays by field name."""
  import jax  # pylint: disable=g-import-not-at-top
  if dataclasses.is_dataclass(draw):
    return {f.name: getattr(draw, f.name) for f in dataclasses.fields(draw)
            if isinstance(getattr(draw, f.name), jax.Array)}
  if hasattr(draw, "_fields"):
    return dict(zip(draw._fields, draw))
  if isinstance(draw, dict):
    return draw
  if isinstance(draw, (tuple, list)):
    return {str(i): v for i, v in enumerate(draw)}
  return {"": draw}


def _sampler_cases(cj, jnp):
  """(name, fn(key)) for every public sampler across its options."""
  traced = _Traced
  cases = []
  add = lambda name, fn: cases.append((name, fn))
  for alpha in (1.0, 0.3, 2.0, traced(0.3), traced(2.0)):
    add(f"lam/{alpha!r}", functools.partial(cj.sample_lam, None, alpha, (B,)))
  for placement in ("official", "inside"):
    add(f"box/{placement}",
        functools.partial(cj.sample_box, None, 0.3, H, W + 2,
                          placement=placement))
  # Each mode and each pairing twice (elem/flip is in the option cases).
  modes_pairings = [("batch", "flip"), ("batch", "permute"), ("pair", "flip"),
                    ("pair", "permute"), ("elem", "roll")]
  for mode, pairing in modes_pairings:
    common = dict(mode=mode, pairing=pairing)
    add(f"cutmix/{mode}/{pairing}", functools.partial(
        cj.sample_cutmix, None, B, H, W, alpha=0.7, **common))
    add(f"mixup/{mode}/{pairing}", functools.partial(
        cj.sample_mixup, None, B, alpha=0.4, **common))
    add(f"mix/{mode}/{pairing}", functools.partial(
        cj.sample_mix, None, B, H, W, prob=0.8, **common))
    add(f"resizemix/{mode}/{pairing}", functools.partial(
        cj.sample_resizemix, None, B, H, W, **common))
    add(f"switch/{mode}/{pairing}", functools.partial(
        cj.sample_switch, None, B, H, W, probs={
            "cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0},
        **common))
    add(f"multibox/{mode}/{pairing}", functools.partial(
        cj.sample_multibox, None, B, H, W, n_boxes=2, **common))
    add(f"fmix/{mode}/{pairing}", functools.partial(
        cj.sample_fmix, None, B, H, W, **common))
    add(f"cuboid/{mode}/{pairing}", functools.partial(
        cj.sample_cutmix_cuboid, None, B, T, H, W, **common))
  for mode in ("batch", "elem"):
    add(f"cutout/{mode}", functools.partial(
        cj.sample_cutout, None, B, H, W, mode=mode))
  # Options, invariant draws, groups, traced numbers.
  for invariant_mode in ("pair", "elem"):
    inv = dict(mode=invariant_mode, invariant=True)
    add(f"cutmix/invariant/{invariant_mode}", functools.partial(
        cj.sample_cutmix, None, B, H, W, prob=0.7, **inv))
    add(f"mixup/invariant/{invariant_mode}", functools.partial(
        cj.sample_mixup, None, B, **inv))
    add(f"mix/invariant/{invariant_mode}", functools.partial(
        cj.sample_mix, None, B, H, W, **inv))
    add(f"cutout/invariant/{invariant_mode}", functools.partial(
        cj.sample_cutout, None, B, H, W, prob=0.6, **inv))
    add(f"resizemix/invariant/{invariant_mode}", functools.partial(
        cj.sample_resizemix, None, B, H, W, **inv))
    add(f"switch/invariant/{invariant_mode}", functools.partial(
        cj.sample_switch, None, B, H, W,
        probs={"cutmix": 1.0, "cutout": 2.0}, **inv))
    add(f"multibox/invariant/{invariant_mode}", functools.partial(
        cj.sample_multibox, None, B, H, W, **inv))
    add(f"fmix/invariant/{invariant_mode}", functools.partial(
        cj.sample_fmix, None, B, H, W, max_soft=0.2, **inv))
    add(f"cuboid/invariant/{invariant_mode}", functools.partial(
        cj.sample_cutmix_cuboid, None, B, T, H, W, **inv))
  elem = dict(mode="elem")
  add("cutmix/minmax", functools.partial(
      cj.sample_cutmix, None, B, H, W, minmax=(0.2, 0.7), **elem))
  add("cutmix/inside", functools.partial(
      cj.sample_cutmix, None, B, H, W, placement="inside", **elem))
  add("cutmix/groups", functools.partial(
      cj.sample_cutmix, None, B, H, W, groups=2, pairing="permute", **elem))
  add("cutmix/traced", functools.partial(
      cj.sample_cutmix, None, B, H, W, alpha=traced(0.3), prob=traced(0.6),
      **elem))
  add("mixup/traced", functools.partial(
      cj.sample_mixup, None, B, alpha=traced(2.0), prob=traced(0.9), **elem))
  add("mixup/groups", functools.partial(
      cj.sample_mixup, None, B, groups=4, pairing="roll", **elem))
  add("mix/minmax", functools.partial(
      cj.sample_mix, None, B, H, W, cutmix_minmax=(0.3, 0.6), **elem))
  add("mix/traced", functools.partial(
      cj.sample_mix, None, B, H, W, mixup_alpha=traced(0.5),
      cutmix_alpha=traced(1.5), switch_prob=traced(0.3), **elem))
  add("mix/mixup_off", functools.partial(
      cj.sample_mix, None, B, H, W, mixup_alpha=0.0, **elem))
  add("cutout/size", functools.partial(
      cj.sample_cutout, None, B, H, W, size=(3, 5), prob=0.5))
  add("resizemix/scale", functools.partial(
      cj.sample_resizemix, None, B, H, W, scale=(0.3, 0.9), prob=0.7, **elem))
  add("switch/traced", functools.partial(
      cj.sample_switch, None, B, H, W, probs={
          "cutmix": traced(1.0), "mixup": traced(0.5), "cutout": 0.25},
      cutmix_alpha=traced(0.4), mixup_alpha=traced(0.6), cutout_size=3,
      cutmix_minmax=None, **elem))
  add("switch/minmax", functools.partial(
      cj.sample_switch, None, B, H, W, probs={"cutmix": 1.0, "resizemix": 1.0},
      cutmix_minmax=(0.25, 0.5), resize_scale=(0.2, 0.4), groups=2, **elem))
  add("multibox/options", functools.partial(
      cj.sample_multibox, None, B, H, W, n_boxes=3, area_range=(0.1, 0.6),
      aspect_range=(0.5, 2.0), invert=True, prob=0.7, groups=2, **elem))
  add("fmix/soft", functools.partial(
      cj.sample_fmix, None, B, H, W, alpha=traced(0.5), decay_power=2.0,
      max_soft=0.3, prob=traced(0.8), **elem))
  add("cuboid/options", functools.partial(
      cj.sample_cutmix_cuboid, None, B, T, H, W, alpha=traced(0.5),
      placement="inside", prob=0.8, groups=2, **elem))
  return cases


def _sharded_cases(cj, jax, jnp, key, x):
  """Draws made inside `shard_map`: per-shard keys, and `cross_device`,
  applied to the batch `x` (sharded over the mesh's 'data' axis)."""
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((SHARDS,), ("data",), devices=jax.devices()[:SHARDS])
  local = B // SHARDS
  samplers = {
      "cutmix": lambda key, **kw: cj.sample_cutmix(key, local, H, W, **kw),
      "mixup": lambda key, **kw: cj.sample_mixup(key, local, **kw),
      "mix": lambda key, **kw: cj.sample_mix(key, local, H, W, **kw),
      "resizemix": lambda key, **kw: cj.sample_resizemix(key, local, H, W,
                                                         **kw),
      "switch": lambda key, **kw: cj.sample_switch(
          key, local, H, W, probs={"cutmix": 1.0, "mixup": 1.0,
                                   "resizemix": 1.0}, **kw),
  }
  variants = {
      "flip": dict(cross_device=True, pairing="flip", mode="elem"),
      "roll": dict(cross_device=True, pairing="roll", mode="batch"),
      "shard": dict(mode="pair"),
      "invariant": dict(mode="elem", invariant=True),
  }
  cases = []
  for name, sampler in samplers.items():
    for variant, kw in variants.items():
      cases.append((f"{name}/shard_map/{variant}", jax.shard_map(
          lambda k, sampler=sampler, kw=kw: _fields(
              sampler(k, axis_name="data", **kw)),
          mesh=mesh, in_specs=P(), out_specs=P("data"))))
  for variant in ("shard", "invariant"):
    kw = variants[variant]
    for name, sampler in {
        "multibox": lambda key, **kw: cj.sample_multibox(key, local, H, W,
                                                          **kw),
        "fmix": lambda key, **kw: cj.sample_fmix(key, local, H, W, **kw),
        "cuboid": lambda key, **kw: cj.sample_cutmix_cuboid(key, local, T, H,
                                                            W, **kw),
        "cutout": lambda key, **kw: cj.sample_cutout(key, local, H, W, **kw),
    }.items():
      cases.append((f"{name}/shard_map/{variant}", jax.shard_map(
          lambda k, sampler=sampler, kw=kw: _fields(
              sampler(k, axis_name="data", **kw)),
          mesh=mesh, in_specs=P(), out_specs=P("data"))))
  # Partners fetched across shards, under ops that need them.
  for pairing in ("flip", "roll"):
    def run(pairing=pairing):
      def local(k, images, seg, labels):
        d = cj.sample_switch(k, B // SHARDS, H, W, probs={
            "cutmix": 1.0, "mixup": 1.0, "resizemix": 1.0}, mode="elem",
                             pairing=pairing, axis_name="data",
                             cross_device=True)
        return (cj.apply_tree(d, {"image": images, "seg": seg}),
                cj.mix_labels(d, labels, num_classes=5))
      fn = jax.shard_map(local, mesh=mesh, in_specs=(P(),) + (P("data"),) * 3,
                         out_specs=P("data"))
      return fn(key, x["uint8"], x["seg"], x["labels"])
    cases.append((f"cross_device/{pairing}", run))
  return cases


def _fields(draw):
  return {k: v for k, v in _draw_arrays(draw).items()}


def _inputs(jax, jnp):
  """The fixed batch the appliers are run on."""
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (B, H, W, 3)).astype(np.float32)
  return {
      "float32": jnp.asarray(images),
      "uint8": jnp.asarray(images.astype(np.uint8)),
      "nchw": jnp.asarray(images.transpose(0, 3, 1, 2)),
      "clips": jnp.asarray(rng.uniform(0, 255, (B, T, H, W, 2)).astype(
          np.float32)),
      "clips_uint8": jnp.asarray(rng.integers(0, 255, (B, T, H, W, 2),
                                              dtype=np.uint8)),
      "seg": jnp.asarray(rng.integers(0, 5, (B, H, W), dtype=np.uint8)),
      "labels": jnp.asarray(rng.integers(0, 5, (B,), dtype=np.int32)),
      "soft": jnp.asarray(rng.dirichlet(np.ones(5), B).astype(np.float32)),
      "boxes": jnp.asarray(np.sort(rng.integers(0, H + 1, (B, 3, 2, 2)),
                                   axis=2).transpose(0, 1, 3, 2).reshape(
                                       B, 3, 4).astype(np.int32)),
      "classes": jnp.asarray(rng.integers(0, 9, (B, 3), dtype=np.int32)),
      "valid": jnp.asarray(rng.uniform(size=(B, 3)) < 0.8),
  }


def _sharded_inputs(jax, jnp):
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  mesh = jax.make_mesh((SHARDS,), ("data",), devices=jax.devices()[:SHARDS])
  x = _inputs(jax, jnp)
  return {k: jax.device_put(x[k], NamedSharding(mesh, P("data")))
          for k in ("uint8", "seg", "labels")}


def _applier_cases(cj, jax, jnp, key, x):
  """The appliers on the fixed batch `x`, for a draw of each kind."""
  elem = dict(mode="elem", pairing="permute")
  draws = {
      "cutmix": cj.sample_cutmix(key, B, H, W, **elem),
      "mixup": cj.sample_mixup(key, B, alpha=0.4, **elem),
      "mix": cj.sample_mix(key, B, H, W, **elem),
      "cutout": cj.sample_cutout(key, B, H, W, size=3),
      "resizemix": cj.sample_resizemix(key, B, H, W, mode="elem"),
      "switch": cj.sample_switch(key, B, H, W, probs={
          "cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0},
                                 mode="elem", pairing="roll"),
      "multibox": cj.sample_multibox(key, B, H, W, n_boxes=2, mode="elem"),
      "fmix": cj.sample_fmix(key, B, H, W, mode="elem"),
      "fmix_soft": cj.sample_fmix(key, B, H, W, max_soft=0.3, mode="elem"),
      "cuboid": cj.sample_cutmix_cuboid(key, B, T, H, W, mode="elem",
                                        groups=2),
  }
  cases = []
  add = lambda name, fn: cases.append((name, fn))
  for name, draw in draws.items():
    if name == "cuboid":
      for dtype in ("clips", "clips_uint8"):
        add(f"apply/{name}/{dtype}",
            functools.partial(cj.apply_params, draw, x[dtype]))
      add(f"apply/{name}/NCTHW", functools.partial(
          cj.apply_params, draw, x["clips"].transpose(0, 4, 1, 2, 3),
          layout="NCTHW"))
      add(f"tree/{name}", functools.partial(cj.apply_tree, draw, {
          "clips": x["clips"], "seg": x["clips_uint8"][..., 0]},
                                           layouts={"seg": "NTHW"}))
    else:
      for dtype in ("float32", "uint8"):
        add(f"apply/{name}/{dtype}",
            functools.partial(cj.apply_params, draw, x[dtype],
                              fill_value=jnp.array([1.0, 2.0, 3.0])))
      add(f"apply/{name}/NCHW", functools.partial(
          cj.apply_params, draw, x["nchw"], layout="NCHW", fill_value=7))
      if name in ("resizemix", "switch"):
        add(f"apply/{name}/nearest", functools.partial(
            cj.apply_params, draw, x["float32"], resize="nearest"))
      tree = {"image": x["float32"], "seg": x["seg"], "u8": x["uint8"],
              "id": x["labels"]}
      add(f"tree/{name}", functools.partial(
          cj.apply_tree, draw, tree, kinds={"id": "keep", "u8": "blend"}))
      add(f"tree/{name}/ignore", functools.partial(
          cj.apply_tree, draw, tree, kinds={"id": "keep"}, ignore_value=255,
          fill_value=9.0))
    add(f"labels/{name}/int", functools.partial(
        cj.mix_labels, draw, x["labels"], num_classes=5))
    add(f"labels/{name}/smooth", functools.partial(
        cj.mix_labels, draw, x["labels"], num_classes=5, label_smoothing=0.1))
    add(f"labels/{name}/soft", functools.partial(
        cj.mix_labels, draw, x["soft"], label_smoothing=jnp.float32(0.2)))
    if name not in ("multibox", "fmix", "fmix_soft", "cuboid"):
      add(f"boxes/{name}", functools.partial(
          cj.mix_boxes, draw, x["boxes"], x["classes"], x["valid"]))
      add(f"boxes/{name}/options", functools.partial(
          cj.mix_boxes, draw, x["boxes"].astype(jnp.float32) + 0.5,
          x["classes"], x["valid"], min_visible=0.3, max_boxes=7,
          shrink=True))
  add("boxes/mix/narrow", functools.partial(
      cj.mix_boxes, draws["mix"], x["boxes"], x["classes"], x["valid"],
      max_boxes=2))
  # The one-call ops.
  add("op/cutmix", functools.partial(
      cj.cutmix, key, x["uint8"], x["labels"], num_classes=5, mode="pair"))
  add("op/mixup", functools.partial(
      cj.mixup, key, x["float32"], x["soft"], mode="elem"))
  add("op/mix", functools.partial(
      cj.mix, key, x["nchw"], x["labels"], num_classes=5, layout="NCHW",
      label_smoothing=0.1))
  add("op/cutout", functools.partial(cj.cutout, key, x["uint8"], size=4))
  add("op/resizemix", functools.partial(
      cj.resizemix, key, x["float32"], x["labels"], num_classes=5))
  add("op/switch", functools.partial(
      cj.switch, key, x["uint8"], x["labels"], num_classes=5,
      probs={"cutmix": 1.0, "mixup": 1.0, "cutout": 1.0, "resizemix": 1.0},
      mode="elem"))
  add("op/pair", functools.partial(
      cj.cutmix_pair, key, x["float32"][0], x["float32"][1]))
  return cases


class _Traced:
  """A number a case passes traced: it becomes an argument of the jit."""

  def __init__(self, value):
    self.name = f"t{value!r}"
    self.value = value

  def __repr__(self):
    return f"traced({self.value!r})"


def _bind(fn, key, scalars):
  """Calls a sampler case with `key` first and its `_Traced` numbers taken
  from `scalars`."""
  import jax  # pylint: disable=g-import-not-at-top
  sub = lambda v: scalars[v.name] if isinstance(v, _Traced) else v
  args, kwargs = jax.tree.map(
      sub, (fn.args[1:], fn.keywords),
      is_leaf=lambda v: isinstance(v, _Traced))
  return fn.func(key, *args, **kwargs)


def _traced_numbers(fns):
  import jax  # pylint: disable=g-import-not-at-top
  leaves = jax.tree.leaves([(f.args, f.keywords) for f in fns],
                           is_leaf=lambda v: isinstance(v, _Traced))
  return {v.name: np.float32(v.value) for v in leaves
          if isinstance(v, _Traced)}


def flatten(name, tree):
  """`{name/path: numpy array}` of every array in a result."""
  import jax  # pylint: disable=g-import-not-at-top
  if dataclasses.is_dataclass(tree) or hasattr(tree, "_fields"):
    tree = _draw_arrays(tree)
  return {name + jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


GROUPS = ("draw", "sharded", "out")


def generate(groups=GROUPS):
  """`{name: array}` for every case of `groups`, on the current code.

  Each group of cases is one `jax.jit` whose key, inputs and traced numbers
  are arguments (a constant key could be folded by the compiler): compiling
  a few large programs takes seconds, a few hundred small ones minutes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import cutmix_jax as cj  # pylint: disable=g-import-not-at-top
  key = jax.random.key(22)
  samplers = _sampler_cases(cj, jnp)
  scalars = _traced_numbers([fn for _, fn in samplers])

  @jax.jit
  def draws(key, scalars):
    return {name: _fields(_bind(fn, key, scalars)) for name, fn in samplers}

  @jax.jit
  def sharded(key, x):
    return {name: fn() if name.startswith("cross_device") else fn(key)
            for name, fn in _sharded_cases(cj, jax, jnp, key, x)}

  @jax.jit
  def applied(key, x):
    return {name: fn() for name, fn in _applier_cases(cj, jax, jnp, key, x)}

  arrays = {}
  runs = {"draw": lambda: draws(key, scalars),
          "sharded": lambda: sharded(key, _sharded_inputs(jax, jnp)),
          "out": lambda: applied(key, _inputs(jax, jnp))}
  for group in groups:
    for name, tree in runs[group]().items():
      arrays.update(flatten(f"{group}/{name}", tree))
  return arrays


if __name__ == "__main__":
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + " --xla_force_host_platform_device_count=8").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  result = generate()
  np.savez_compressed(PATH, **result)
  print(f"{len(result)} arrays, {PATH.stat().st_size} bytes -> {PATH}")
