"""apply_tree on dense targets and mix_boxes on detection boxes.

Boxes are checked against a brute-force NumPy rasterisation: every box and
the pasted rectangle are drawn as pixel masks and the rules are applied to
pixel counts.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj
from cutmix_jax._src import targets

B, H, W = 5, 7, 9


def _raster(box):
  m = np.zeros((H, W), bool)
  t, l, b, r = (int(v) for v in box)
  m[max(t, 0):max(b, 0), max(l, 0):max(r, 0)] = True
  return m


def _seg(seed, shape=(B, H, W), dtype=jnp.uint8):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 6, shape), dtype)


def _draw(method, seed, prob=0.8):
  key = jax.random.key(seed)
  if method == "mixup":
    return cj.sample_mixup(key, B, mode="elem", prob=prob)
  if method == "cutout":
    return cj.sample_cutout(key, B, H, W, size=4, prob=prob)
  if method == "cutmix":
    return cj.sample_cutmix(key, B, H, W, mode="elem", prob=prob,
                            pairing="permute")
  return cj.sample_mix(key, B, H, W, mode="elem", prob=prob, pairing="roll")


@pytest.mark.quick_every(2)
@pytest.mark.parametrize("method", ["cutmix", "mixup", "mix", "cutout"])
def test_segmentation_maps_are_exact_selects(method):
  fn = jax.jit(targets.apply_tree)
  for seed in range(2):
    p = _draw(method, seed)
    seg = _seg(seed)
    img = jax.random.uniform(jax.random.key(seed), (B, H, W, 3))
    weight = jax.random.uniform(jax.random.key(seed + 9), (B, H, W))
    out = fn(p, {"image": img, "seg": seg, "seg1": seg[..., None], "w": weight})
    assert out["seg"].dtype == jnp.uint8 and out["seg1"].dtype == jnp.uint8
    np.testing.assert_array_equal(out["seg1"][..., 0], out["seg"])
    # Floating leaves are apply_params (up to the FMA contraction that a
    # different compilation may choose for the blend).
    np.testing.assert_allclose(out["image"], cj.apply_params(p, img),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        out["w"], cj.apply_params(p, weight, layout="NHW"), rtol=1e-6,
        atol=1e-7)
    # The expected select, sample by sample.
    seg_np, lam, op = np.asarray(seg), np.asarray(p.lam), np.asarray(p.op)
    partner, box = np.asarray(p.partner), np.asarray(p.box)
    for i in range(B):
      if op[i] == cj.Op.MIXUP:
        want = seg_np[i] if lam[i] >= 0.5 else seg_np[partner[i]]
      elif op[i] == cj.Op.CUTMIX:
        want = np.where(_raster(box[i]), seg_np[partner[i]], seg_np[i])
      else:  # unchanged, and Cutout leaves maps unchanged by default
        want = seg_np[i]
      np.testing.assert_array_equal(out["seg"][i], want)


@pytest.mark.parametrize("method", ["mixup", "mix", "cutout"])
def test_ignore_value(method):
  p = _draw(method, 1, prob=1.0)
  seg = _seg(1)
  out = targets.apply_tree(p, seg, ignore_value=255)
  seg_np, op = np.asarray(seg), np.asarray(p.op)
  partner, box = np.asarray(p.partner), np.asarray(p.box)
  for i in range(B):
    own, other = seg_np[i], seg_np[partner[i]]
    if op[i] == cj.Op.MIXUP:
      want = np.where(own == other, own, 255)
    elif op[i] == cj.Op.CUTMIX:
      want = np.where(_raster(box[i]), other, own)
    elif op[i] == cj.Op.CUTOUT:
      want = np.where(_raster(box[i]), 255, own)
    else:
      want = own
    np.testing.assert_array_equal(out[i], want)


def test_kinds_layouts_and_prefixes():
  p = _draw("mixup", 0, prob=1.0)
  depth = jax.random.uniform(jax.random.key(1), (B, H, W))
  ids = jnp.arange(B)
  tree = {"depth": depth, "soft": jnp.ones((B, H, W, 4)), "ids": ids,
          "chw": jnp.ones((B, 2, H, W))}
  out = targets.apply_tree(
      p, tree, kinds={"depth": "select", "ids": "keep"},
      layouts={"chw": "NCHW"})
  assert set(np.unique(out["depth"])) <= set(np.unique(depth))
  np.testing.assert_array_equal(out["ids"], ids)
  np.testing.assert_allclose(out["soft"], 1.0, rtol=1e-6)
  # A tuple tree with a single kind and a pytree-prefix layout.
  a, b = targets.apply_tree(p, (depth, depth[:, None]), kinds="select",
                            layouts=("NHW", "NCHW"))
  np.testing.assert_array_equal(a, b[:, 0])


def test_errors():
  p = _draw("cutmix", 0)
  with pytest.raises(ValueError, match="kinds"):
    targets.apply_tree(p, {"a": jnp.ones((B, H, W))}, kinds="mean")
  with pytest.raises(ValueError, match="names keys"):
    targets.apply_tree(p, {"a": jnp.ones((B, H, W))}, kinds={"b": "keep"})
  with pytest.raises(ValueError, match="default layout"):
    targets.apply_tree(p, {"a": jnp.ones((B, 2, 2, H, W, 1))})
  with pytest.raises(ValueError, match="spatial size"):
    targets.apply_tree(p, jnp.ones((B, H + 1, W)))
  with pytest.raises(TypeError, match="MixParams"):
    targets.apply_tree(object(), jnp.ones((B, H, W)))
  boxes = jnp.zeros((B, 3, 4))
  with pytest.raises(ValueError, match="boxes must be"):
    targets.mix_boxes(p, boxes[:, :, :3], jnp.zeros((B, 3)),
                      jnp.ones((B, 3), bool))
  with pytest.raises(ValueError, match="classes must be"):
    targets.mix_boxes(p, boxes, jnp.zeros((B, 2)), jnp.ones((B, 3), bool))
  with pytest.raises(TypeError, match="valid must be bool"):
    targets.mix_boxes(p, boxes, jnp.zeros((B, 3)), jnp.ones((B, 3)))
  with pytest.raises(ValueError, match="min_visible"):
    targets.mix_boxes(p, boxes, jnp.zeros((B, 3)), jnp.ones((B, 3), bool),
                      min_visible=1.5)


def test_jit_and_vmap():
  seg = _seg(3)

  def step(key, seg):
    p = cj.sample_mix(key, B, H, W, mode="elem")
    return targets.apply_tree(p, {"seg": seg, "x": seg.astype(jnp.float32)})

  keys = jax.random.split(jax.random.key(4), 2)
  jitted = jax.jit(step)(keys[1], seg)
  mapped = jax.jit(jax.vmap(step, in_axes=(0, None)))(keys, seg)
  assert mapped["seg"].shape == (2, B, H, W)
  np.testing.assert_array_equal(mapped["seg"][1], jitted["seg"])
  np.testing.assert_array_equal(mapped["x"][1], jitted["x"])


# ---------------------------------------------------------------------------
# Boxes against a rasterised reference


def _bbox(mask):
  rows, cols = np.nonzero(mask)
  return [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]


def _reference(p, boxes, classes, valid, min_visible, max_boxes, shrink):
  op, partner = np.asarray(p.op), np.asarray(p.partner)
  out = []
  for i in range(B):
    cut = _raster(np.asarray(p.box)[i])
    kept = []
    for j in range(boxes.shape[1]):
      if not valid[i, j]:
        continue
      if op[i] in (cj.Op.CUTMIX, cj.Op.CUTOUT):
        m = _raster(boxes[i, j])
        vis = (m & ~cut).sum()
        if vis > 0 and vis >= min_visible * m.sum():
          box = _bbox(m & ~cut) if shrink else list(boxes[i, j])
          kept.append((box, classes[i, j], False))
      else:
        kept.append((list(boxes[i, j]), classes[i, j], False))
    k = partner[i]
    for j in range(boxes.shape[1]):
      if not valid[k, j]:
        continue
      if op[i] == cj.Op.MIXUP:
        kept.append((list(boxes[k, j]), classes[k, j], True))
      elif op[i] == cj.Op.CUTMIX:
        m = _raster(boxes[k, j])
        inside = (m & cut).sum()
        if inside > 0 and inside >= min_visible * m.sum():
          kept.append((_bbox(m & cut), classes[k, j], True))
    out.append((kept[:max_boxes], len(kept) - min(len(kept), max_boxes)))
  return out


def _random_boxes(rng, n):
  tops = rng.integers(0, H + 1, (B, n, 2))
  lefts = rng.integers(0, W + 1, (B, n, 2))
  boxes = np.stack([tops.min(-1), lefts.min(-1), tops.max(-1), lefts.max(-1)],
                   axis=-1)
  # Some boxes are made zero-area on purpose.
  flat = rng.random((B, n)) < 0.15
  boxes[flat, 2] = boxes[flat, 0]
  return boxes


@functools.lru_cache(maxsize=None)
def _jitted_mix_boxes(min_visible, max_boxes, shrink):
  return jax.jit(functools.partial(
      targets.mix_boxes, min_visible=min_visible, max_boxes=max_boxes,
      shrink=shrink))


@pytest.mark.quick_every(2)
@pytest.mark.parametrize("method,min_visible,max_boxes,shrink", [
    ("cutmix", 0.0, 8, False), ("cutmix", 0.25, 3, True),
    ("mix", 0.5, 10, False), ("mix", 1.0, 4, True), ("cutout", 0.25, 4, True)])
def test_boxes_match_rasterisation(method, min_visible, max_boxes, shrink):
  n = 4
  fn = _jitted_mix_boxes(min_visible, max_boxes, shrink)
  for seed in range(6):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, n)
    dtype = np.float32 if seed % 2 else np.int32
    classes = rng.integers(0, 50, (B, n)).astype(np.int32)
    valid = rng.random((B, n)) < 0.8
    p = _draw(method, seed)
    got = fn(p, boxes.astype(dtype), classes, valid)
    assert got.boxes.dtype == dtype and got.boxes.shape == (B, max_boxes, 4)
    want = _reference(p, boxes, classes, valid, min_visible, max_boxes, shrink)
    for i, (kept, dropped) in enumerate(want):
      k = len(kept)
      assert int(got.dropped[i]) == dropped
      np.testing.assert_array_equal(got.valid[i], np.arange(max_boxes) < k)
      np.testing.assert_array_equal(
          got.boxes[i, :k], np.array([b for b, _, _ in kept]).reshape(k, 4))
      np.testing.assert_array_equal(got.classes[i, :k], [c for _, c, _ in kept])
      np.testing.assert_array_equal(
          got.from_partner[i, :k], [f for _, _, f in kept])
      assert not got.boxes[i, k:].any() and not got.classes[i, k:].any()


def test_boxes_under_mixup_keep_both_and_vmap():
  rng = np.random.default_rng(0)
  boxes = _random_boxes(rng, 3).astype(np.float32)
  valid = np.ones((B, 3), bool)
  p = _draw("mixup", 0, prob=1.0)
  got = _jitted_mix_boxes(0.1, 6, False)(p, boxes, jnp.ones((B, 3), jnp.int32),
                                         valid)
  mixed = np.asarray(p.op) == cj.Op.MIXUP
  np.testing.assert_array_equal(got.valid.sum(1), np.where(mixed, 6, 3))
  np.testing.assert_array_equal(got.boxes[:, :3], boxes)
  # vmap over a leading axis of draws and boxes.
  keys = jax.random.split(jax.random.key(0), 2)

  def one(key, bx):
    q = cj.sample_cutmix(key, B, H, W, mode="elem")
    return targets.mix_boxes(q, bx, jnp.ones((B, 3), jnp.int32), valid)

  out = jax.jit(jax.vmap(one))(keys, jnp.stack([boxes, boxes]))
  single = jax.jit(one)(keys[1], boxes)
  np.testing.assert_array_equal(out.boxes[1], single.boxes)
  np.testing.assert_array_equal(out.dropped[1], single.dropped)
