"""Every applier follows `MixParams.op`: images, labels, maps and boxes of a
hand-built draw agree with each other, whatever `lam` and `box` say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj
from cutmix_jax import Op

B, H, W = 4, 8, 8
BOX = [2, 2, 6, 6]  # 16 of 64 pixels
PARTNER = [3, 2, 1, 0]


def _draw(op, lam=0.75, **kwargs):
  return cj.MixParams(lam=jnp.full(B, lam, jnp.float32),
                      box=jnp.tile(jnp.array(BOX, jnp.int32), (B, 1)),
                      partner=jnp.array(PARTNER, jnp.int32),
                      op=jnp.full(B, int(op), jnp.int32), height=H, width=W,
                      **kwargs)


def _apply_all(p):
  images = jnp.broadcast_to(jnp.arange(1, B + 1, dtype=jnp.float32)[
      :, None, None, None], (B, H, W, 3))
  seg = jnp.broadcast_to(jnp.arange(10, 10 + B, dtype=jnp.uint8)[
      :, None, None], (B, H, W))
  out = cj.apply_tree(p, {"image": images, "seg": seg})
  targets = cj.mix_labels(p, jnp.arange(B), num_classes=B)
  boxes = jnp.tile(jnp.array([[[0.0, 0.0, 8.0, 8.0]]]), (B, 1, 1))
  mixed = cj.mix_boxes(p, boxes, jnp.arange(B)[:, None],
                       jnp.ones((B, 1), bool), max_boxes=2)
  return out["image"], out["seg"], targets, mixed


def _in_box():
  m = np.zeros((H, W), bool)
  m[BOX[0]:BOX[2], BOX[1]:BOX[3]] = True
  return m


@pytest.mark.slow
@pytest.mark.parametrize("op", list(Op))
@pytest.mark.parametrize("jit", [False, True])
def test_every_applier_follows_op(op, jit):
  p = _draw(op)
  images, seg, targets, boxes = jax.tree.map(
      np.asarray, (jax.jit(_apply_all) if jit else _apply_all)(p))
  inside = _in_box()
  for i, j in enumerate(PARTNER):
    own, other = i + 1.0, j + 1.0
    expected = np.full((H, W), own, np.float32)
    expected_seg = np.full((H, W), 10 + i)
    label = np.eye(B)[i]
    if op == Op.MIXUP:
      expected[:] = 0.75 * own + 0.25 * other
      label = 0.75 * np.eye(B)[i] + 0.25 * np.eye(B)[j]
    elif op in (Op.CUTMIX, Op.RESIZEMIX):
      expected[inside] = other
      expected_seg[inside] = 10 + j
      label = 0.75 * np.eye(B)[i] + 0.25 * np.eye(B)[j]
    elif op == Op.CUTOUT:
      expected[inside] = 0.0
    np.testing.assert_allclose(images[i, ..., 0], expected, rtol=1e-6)
    np.testing.assert_array_equal(seg[i], expected_seg)
    np.testing.assert_allclose(targets[i], label, rtol=1e-6)
    # The pixel fraction taken from the partner is the label's partner weight.
    from_partner = (images[i, ..., 0] != own).mean()
    if op in (Op.CUTMIX, Op.RESIZEMIX):
      assert from_partner == targets[i, j]
    # Boxes: the own box (covering the image) is always kept; partner boxes
    # come only under ops that bring partner pixels.
    gained = bool(np.asarray(boxes.from_partner[i]).any())
    assert gained == (op in (Op.MIXUP, Op.CUTMIX, Op.RESIZEMIX))
    assert bool(boxes.valid[i, 0]) and not bool(boxes.from_partner[i, 0])


def test_a_concrete_op_outside_ops_is_rejected():
  p = _draw(Op.MIXUP, ops=(int(Op.CUTMIX),))
  x = jnp.ones((B, H, W, 3))
  for call in (lambda: cj.apply_params(p, x),
               lambda: cj.mix_labels(p, jnp.arange(B), num_classes=B),
               lambda: cj.apply_tree(p, {"x": x}),
               lambda: cj.mix_boxes(p, jnp.zeros((B, 1, 4)),
                                    jnp.zeros((B, 1)), jnp.ones((B, 1), bool))):
    with pytest.raises(ValueError, match=r"params.op holds \['MIXUP'\]"):
      call()


@pytest.mark.slow
def test_a_traced_op_outside_ops_is_none_everywhere():
  p = _draw(Op.MIXUP, ops=(int(Op.CUTMIX),))
  images, seg, targets, boxes = jax.jit(_apply_all)(p)
  none = _apply_all(_draw(Op.NONE))
  np.testing.assert_array_equal(images, none[0])
  np.testing.assert_array_equal(seg, none[1])
  np.testing.assert_array_equal(targets, none[2])
  for a, b in zip(boxes, none[3]):
    np.testing.assert_array_equal(a, b)
