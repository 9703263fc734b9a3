"""On the 8 simulated devices: the mask, cuboid and dense-target APIs.

`sample_multibox` / `sample_fmix` + `apply_params` + `mix_labels`,
`sample_cutmix_cuboid` + `apply_params` on video, and a `sample_cutmix` draw
applied by `apply_tree` (image + integer segmentation map) and `mix_boxes`
(padded boxes), under:

(a) `jit` over a batch sharded `P('data')`: bit-identical to the unsharded
    single-device call, and the batch sharding is kept;
(b) `shard_map` / `pmap` with `axis_name`: shard s draws with
    `fold_in(key, s)` (`plan.plan`, used by every sampler), so shards
    differ;
(c) per-shard invariants: label rows sum to 1, lam is the exact kept
    fraction, selects are bit-exact, dtypes are kept.
"""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import cutmix_jax as cj

B, T, H, W, C, K, NB = 16, 4, 8, 8, 3, 5, 3  # NB: box slots per image
SHARDS = 8
KEY = jax.random.key(3)
EXPLICIT, AUTO = AxisType.Explicit, AxisType.Auto
# (kind, mode, image dtype, mesh axis type for the sharded jit, also pmap):
# each kind once per mode, once per dtype and once per axis type; pmap for
# one case of each kind but FMix (whose compiles are the slowest).
CASES = [
    ("multibox", "batch", np.uint8, EXPLICIT, True),
    ("multibox", "elem", np.float32, AUTO, False),
    ("fmix", "elem", np.uint8, EXPLICIT, False),
    ("fmix_soft", "batch", np.float32, AUTO, False),
    ("cuboid", "batch", np.float32, AUTO, False),
    ("cuboid", "elem", np.uint8, EXPLICIT, True),
    ("tree", "elem", np.float32, EXPLICIT, False),
    ("tree", "batch", np.uint8, AUTO, True),
]
IDS = [f"{k}-{m}-{np.dtype(d).name}-{a.name}{'-pmap' if pm else ''}"
       for k, m, d, a, pm in CASES]
# Outputs computed from the sharded batch (the rest are draws from the key).
DATA_OUTPUTS = ("x", "y", "seg", "boxes", "classes", "valid", "from_partner",
                "dropped")
# The draw itself: what must differ between shards.
DRAW_OUTPUTS = ("lam", "mask", "box", "time")


def make_data(kind, dtype):
  rng = np.random.default_rng(0)
  shape = (B, T, H, W, C) if kind == "cuboid" else (B, H, W, C)
  if dtype == np.uint8:
    x = rng.integers(0, 256, shape, dtype=np.uint8)
  else:
    x = rng.normal(size=shape).astype(np.float32)
  data = {"x": x, "y": (np.arange(B) % K).astype(np.int32)}
  if kind == "tree":
    int_case = dtype == np.uint8
    data["seg"] = rng.integers(0, 21, (B, H, W)).astype(
        np.uint8 if int_case else np.int32)
    top = rng.integers(0, H - 1, (B, NB))
    left = rng.integers(0, W - 1, (B, NB))
    bottom = top + rng.integers(1, H - top + 1)
    right = left + rng.integers(1, W - left + 1)
    valid = rng.random((B, NB)) < 0.8
    boxes = np.stack([top, left, bottom, right], -1) * valid[..., None]
    data["boxes"] = boxes.astype(np.int32 if int_case else np.float32)
    data["classes"] = (rng.integers(1, 10, (B, NB)) * valid).astype(np.int32)
    data["valid"] = valid
  return data


def run(kind, mode, axis_name, key, d):
  """Draw on the (local) batch of `d` and apply it; a dict of [batch] arrays."""
  n = d["x"].shape[0]
  common = dict(mode=mode, axis_name=axis_name)
  if kind in ("multibox", "fmix", "fmix_soft"):
    if kind == "multibox":
      p = cj.sample_multibox(key, n, H, W, n_boxes=2, **common)
    else:
      p = cj.sample_fmix(key, n, H, W, max_soft=0.2 if kind == "fmix_soft"
                         else 0.0, **common)
    return dict(x=cj.apply_params(p, d["x"]),
                y=cj.mix_labels(p, d["y"], num_classes=K),
                lam=p.lam, mask=p.mask, partner=p.partner, op=p.op)
  if kind == "cuboid":
    c = cj.sample_cutmix_cuboid(key, n, T, H, W, **common)
    return dict(x=cj.apply_params(c, d["x"]),
                y=cj.mix_labels(c, d["y"], num_classes=K),
                lam=c.lam, box=c.box, time=c.time,
                partner=c.partner, op=c.op)
  p = cj.sample_cutmix(key, n, H, W, **common)
  tree = cj.apply_tree(p, {"image": d["x"], "seg": d["seg"]})
  boxes = cj.mix_boxes(p, d["boxes"], d["classes"], d["valid"],
                       max_boxes=2 * NB)
  return dict(x=tree["image"], seg=tree["seg"],
              y=cj.mix_labels(p, d["y"], num_classes=K),
              lam=p.lam, box=p.box, partner=p.partner, op=p.op,
              **boxes._asdict())


def to_np(out):
  return {k: np.asarray(v) for k, v in out.items()}


def box_mask(box, height, width):
  rows, cols = np.arange(height), np.arange(width)
  return ((rows[None, :, None] >= box[:, 0, None, None])
          & (rows[None, :, None] < box[:, 2, None, None])
          & (cols[None, None, :] >= box[:, 1, None, None])
          & (cols[None, None, :] < box[:, 3, None, None]))


def check_invariants(kind, data, out, shards):
  """(c): what must hold for every shard's own draw, `shards` blocks of B."""
  block = B // shards
  partner = out["partner"] + np.repeat(np.arange(shards) * block, block)
  assert ((partner // block) == (np.arange(B) // block)).all()  # in-shard
  x, xo = data["x"], out["x"]
  own_or_partner = lambda a, o: ((o == a) | (o == a[partner])).all()
  assert xo.dtype == x.dtype and xo.shape == x.shape
  # Labels: rows sum to 1, weighted by the draw's lam.
  lam = out["lam"]
  assert lam.dtype == np.float32
  np.testing.assert_allclose(out["y"].sum(-1), 1.0, rtol=0, atol=1e-6)
  eye = np.eye(K, dtype=np.float32)
  y = data["y"]
  np.testing.assert_allclose(
      out["y"], lam[:, None] * eye[y] + (1 - lam[:, None]) * eye[y[partner]],
      rtol=0, atol=1e-6)
  active = out["op"] == cj.Op.CUTMIX
  assert (active == (partner != np.arange(B))).all()  # prob=1
  if kind in ("multibox", "fmix", "fmix_soft"):
    mask = out["mask"]
    if kind == "fmix_soft":
      assert mask.dtype == np.float32
      np.testing.assert_allclose(lam, 1 - mask.mean((1, 2)), rtol=0, atol=1e-6)
      m = mask[..., None]
      np.testing.assert_allclose(xo, x + m * (x[partner] - x), rtol=0,
                                 atol=1e-6)
    else:
      assert mask.dtype == np.bool_
      # H * W is a power of two: the kept fraction is exact.
      np.testing.assert_array_equal(lam, 1 - mask.mean((1, 2)))
      np.testing.assert_array_equal(
          xo, np.where(mask[..., None], x[partner], x))
      assert own_or_partner(x, xo)
    assert not mask[~active].any()
  elif kind == "cuboid":
    frames = np.arange(T)
    in_time = ((frames[None] >= out["time"][:, :1])
               & (frames[None] < out["time"][:, 1:]))
    inside = in_time[:, :, None, None] & box_mask(out["box"], H, W)[:, None]
    np.testing.assert_array_equal(lam, 1 - inside.mean((1, 2, 3)))
    np.testing.assert_array_equal(
        xo, np.where(inside[..., None], x[partner], x))
    assert own_or_partner(x, xo)
  else:
    inside = box_mask(out["box"], H, W)
    np.testing.assert_array_equal(lam, 1 - inside.mean((1, 2)))
    np.testing.assert_array_equal(
        xo, np.where(inside[..., None], x[partner], x))
    seg, so = data["seg"], out["seg"]
    assert so.dtype == seg.dtype and so.shape == seg.shape
    assert own_or_partner(seg, so)  # never a blended or new value
    np.testing.assert_array_equal(so, np.where(inside, seg[partner], seg))
    check_boxes(data, out, partner, active)


def check_boxes(data, out, partner, active):
  valid, fp, boxes = out["valid"], out["from_partner"], out["boxes"]
  assert boxes.dtype == data["boxes"].dtype
  assert out["classes"].dtype == data["classes"].dtype
  assert valid.dtype == fp.dtype == np.bool_
  assert (out["dropped"] == 0).all()  # max_boxes = 2 * NB never drops
  # Valid slots first, own boxes before the partner's, zeros elsewhere.
  assert (np.diff(valid.astype(int), axis=1) <= 0).all()
  assert (np.diff((fp | ~valid).astype(int), axis=1) >= 0).all()
  assert not (fp & ~valid).any()
  assert (boxes[~valid] == 0).all() and (out["classes"][~valid] == 0).all()
  for i in range(B):
    cut = out["box"][i]
    for box, cls in zip(boxes[i][valid[i] & fp[i]],
                        out["classes"][i][valid[i] & fp[i]]):
      assert active[i]
      assert (box[:2] >= cut[:2]).all() and (box[2:] <= cut[2:]).all()
      assert cls in data["classes"][partner[i]][data["valid"][partner[i]]]
    own = {tuple(b) for b in data["boxes"][i][data["valid"][i]]}
    for box in boxes[i][valid[i] & ~fp[i]]:
      assert tuple(box) in own


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request):
  assert jax.device_count() == SHARDS, "tests/conftest.py sets 8 CPU devices"
  kind, mode, dtype, axis_type, pmap = request.param
  return kind, mode, make_data(kind, dtype), axis_type, pmap


@pytest.mark.quick_every(3)
def test_sharded_jit_equals_single_device(case):
  kind, mode, data, axis_type, _ = case
  fn = jax.jit(functools.partial(run, kind, mode, None))
  reference = to_np(fn(KEY, data))  # unsharded arrays, one device
  mesh = jax.make_mesh((SHARDS,), ("data",), axis_types=(axis_type,))
  sharding = NamedSharding(mesh, P("data"))
  out = fn(KEY, jax.device_put(data, sharding))
  assert out.keys() == reference.keys()
  for name, value in out.items():
    np.testing.assert_array_equal(value, reference[name], err_msg=name)
    if name in DATA_OUTPUTS:
      assert value.sharding.is_equivalent_to(sharding, value.ndim), (
          name, value.sharding)
  check_invariants(kind, data, reference, shards=1)


def _shard_map(kind, mode, data):
  mesh = jax.make_mesh((SHARDS,), ("data",))
  fn = jax.jit(jax.shard_map(
      functools.partial(run, kind, mode, "data"), mesh=mesh,
      in_specs=(P(), P("data")), out_specs=P("data")))
  return to_np(fn(KEY, jax.device_put(data, NamedSharding(mesh, P("data")))))


def _pmap(kind, mode, data):
  split = {k: v.reshape((SHARDS, -1) + v.shape[1:]) for k, v in data.items()}
  out = to_np(jax.pmap(functools.partial(run, kind, mode, "data"),
                       axis_name="data", in_axes=(None, 0))(KEY, split))
  for name, value in out.items():
    assert value.shape[:2] == (SHARDS, B // SHARDS), name
  return {k: v.reshape((B,) + v.shape[2:]) for k, v in out.items()}


@pytest.mark.quick_every(3)
def test_mapped_draws_per_shard(case):
  kind, mode, data, _, pmap = case
  mapped = {"shard_map": _shard_map(kind, mode, data)}
  if pmap:
    mapped["pmap"] = _pmap(kind, mode, data)
  out = mapped["shard_map"]
  block = B // SHARDS
  local = jax.jit(functools.partial(run, kind, mode, None))
  draws, unfolded_differs = [], []
  for s in range(SHARDS):
    rows = slice(s * block, (s + 1) * block)
    shard = {k: v[rows] for k, v in data.items()}
    ref = to_np(local(jax.random.fold_in(KEY, s), shard))
    for how, result in mapped.items():
      assert result.keys() == ref.keys()
      for name, value in ref.items():
        np.testing.assert_array_equal(result[name][rows], value,
                                      err_msg=f"{how}, shard {s}: {name}")
    unfolded = to_np(local(KEY, shard))
    unfolded_differs.append(
        any(not np.array_equal(unfolded[k], ref[k]) for k in ref))
    draws.append(b"".join(out[k][rows].tobytes() for k in DRAW_OUTPUTS
                          if k in out))
  assert len(set(draws)) == SHARDS, "every shard has its own draw"
  assert any(unfolded_differs)
  check_invariants(kind, data, out, shards=SHARDS)

