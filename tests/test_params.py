"""The three draw types and the one way to apply them.

Hand-built box, mask and cuboid draws that describe the same region must
agree on images, labels, integer maps and pytrees; each honours its `op`;
misuse gets an error that says what was wrong.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import cutmix_jax as cj

B, T, H, W, K = 4, 3, 6, 8, 5
# Sample 0 pastes a box from its partner 3; sample 1 is left alone (NONE);
# samples 2 and 3 paste another box from each other.
PARTNER = jnp.array([3, 2, 1, 0], jnp.int32)
OP = jnp.array([cj.Op.CUTMIX, cj.Op.NONE, cj.Op.CUTMIX, cj.Op.CUTMIX],
               jnp.int32)
BOX = jnp.array([[1, 2, 4, 6], [0, 0, 6, 8], [0, 0, 3, 8], [2, 1, 6, 3]],
                jnp.int32)
# Sample 1's box is non-empty but its op is NONE: it must not be pasted.
PASTED = np.asarray(cj.box_area(BOX)) * np.array([1, 0, 1, 1])
LAM = jnp.asarray(1 - PASTED / (H * W), jnp.float32)


def _box_draw():
  return cj.MixParams(lam=LAM, box=BOX, partner=PARTNER, op=OP, height=H,
                      width=W, ops=(int(cj.Op.CUTMIX),))


def _mask_draw(mask=None):
  if mask is None:
    mask = cj.box_mask(BOX, H, W)
  return cj.MaskParams(lam=LAM, mask=mask, partner=PARTNER, op=OP)


def _cuboid_draw(time=None):
  if time is None:
    time = jnp.tile(jnp.array([[0, T]], jnp.int32), (B, 1))
  return cj.CuboidParams(lam=LAM, box=BOX, time=time, partner=PARTNER, op=OP,
                         length=T, height=H, width=W)


def _ids(shape, dtype=jnp.int32):
  """Every element holds its sample's id, 1-based: the source is readable."""
  ids = jnp.arange(1, B + 1, dtype=dtype).reshape((B,) + (1,) * len(shape))
  return jnp.broadcast_to(ids, (B,) + shape)


def _expected_source():
  """[B, H, W]: the 1-based id of the sample each pixel must come from."""
  want = np.repeat(np.arange(1, B + 1)[:, None, None], H, 1).repeat(W, 2)
  for i in range(B):
    if OP[i] == cj.Op.CUTMIX:
      t, l, b, r = np.asarray(BOX[i])
      want[i, t:b, l:r] = int(PARTNER[i]) + 1
  return want


def test_box_and_mask_draws_paste_the_same_pixels():
  want = _expected_source()
  for draw in (_box_draw(), _mask_draw()):
    out = cj.apply_params(draw, _ids((H, W, 2), jnp.uint8))
    assert out.dtype == jnp.uint8
    np.testing.assert_array_equal(out[..., 0], want)
    np.testing.assert_array_equal(out[..., 1], want)
    seg = cj.apply_params(draw, _ids((H, W)), layout="NHW")
    np.testing.assert_array_equal(seg, want)


def test_cuboid_pastes_its_frames_only():
  want = _expected_source()
  time = jnp.array([[1, 3], [0, 3], [0, 1], [2, 2]], jnp.int32)
  out = np.asarray(cj.apply_params(_cuboid_draw(time), _ids((T, H, W, 1))))
  for i in range(B):
    for t in range(T):
      inside = time[i, 0] <= t < time[i, 1]
      source = want[i] if inside else np.full((H, W), i + 1)
      np.testing.assert_array_equal(out[i, t, ..., 0], source, (i, t))
  # Over all frames it equals the box draw on every frame.
  clips = _ids((T, H, W, 2), jnp.uint8)
  np.testing.assert_array_equal(
      cj.apply_params(_cuboid_draw(), clips),
      cj.apply_params(_box_draw(), clips, layout="NTHWC"))
  # Channel-first clips get the same voxels.
  np.testing.assert_array_equal(
      cj.apply_params(_cuboid_draw(), jnp.moveaxis(clips, -1, 1),
                      layout="NCTHW"),
      jnp.moveaxis(cj.apply_params(_cuboid_draw(), clips), -1, 1))


def test_every_draw_mixes_labels_alike():
  labels = jnp.array([0, 1, 2, 4])
  want = np.zeros((B, K), np.float32)
  for i in range(B):
    want[i, labels[i]] += LAM[i]
    want[i, labels[PARTNER[i]]] += 1 - LAM[i]
  for draw in (_box_draw(), _mask_draw(), _cuboid_draw()):
    got = cj.mix_labels(draw, labels, num_classes=K)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
  # A sample whose op is NONE keeps its label whatever its lam says.
  edited = _mask_draw()
  edited = cj.MaskParams(lam=edited.lam.at[1].set(0.25), mask=edited.mask,
                         partner=PARTNER, op=OP)
  got = cj.mix_labels(edited, labels, num_classes=K)
  np.testing.assert_array_equal(got[1], np.eye(K)[labels[1]])


def test_apply_tree_takes_every_draw():
  want = _expected_source()
  tree = {"image": _ids((H, W, 3)).astype(jnp.float32),
          "seg": _ids((H, W), jnp.uint8)}
  for draw in (_box_draw(), _mask_draw()):
    out = cj.apply_tree(draw, tree)
    np.testing.assert_array_equal(out["image"][..., 0], want)
    np.testing.assert_array_equal(out["seg"], want)
    assert out["seg"].dtype == jnp.uint8
  clips = {"video": _ids((T, H, W, 3)).astype(jnp.float32),
           "seg": _ids((T, H, W, 1), jnp.uint8)}
  out = cj.apply_tree(_cuboid_draw(), clips)
  for t in range(T):
    np.testing.assert_array_equal(out["video"][:, t, ..., 0], want)
    np.testing.assert_array_equal(out["seg"][:, t, ..., 0], want)


def test_a_mask_draw_honours_its_op():
  # Sample 1's mask is full but its op is NONE: unchanged.
  mask = cj.box_mask(BOX, H, W).at[1].set(True)
  out = cj.apply_params(_mask_draw(mask), _ids((H, W)), layout="NHW")
  np.testing.assert_array_equal(out, _expected_source())
  with pytest.raises(ValueError, match=r"\['MIXUP'\].*only hold CUTMIX"):
    cj.apply_params(
        cj.MaskParams(lam=LAM, mask=mask, partner=PARTNER,
                      op=OP.at[0].set(cj.Op.MIXUP)),
        _ids((H, W)), layout="NHW")


def test_a_soft_mask_selects_the_heavier_source_in_select_leaves():
  m = np.zeros((B, H, W), np.float32)
  m[0, 0, :4] = [0.25, 0.5, 0.75, 1.0]  # partner weights of sample 0
  draw = cj.MaskParams(lam=jnp.asarray(1 - m.mean((1, 2))), mask=jnp.asarray(m),
                       partner=PARTNER, op=jnp.full((B,), cj.Op.CUTMIX,
                                                    jnp.int32))
  seg = _ids((H, W), jnp.uint8)
  out = np.asarray(cj.apply_tree(draw, {"seg": seg})["seg"])
  # A tie (0.5) keeps its own; only weights above it take the partner.
  np.testing.assert_array_equal(out[0, 0, :5], [1, 1, 4, 4, 1])
  assert (np.delete(out.reshape(B, -1), range(4), axis=1)[0] == 1).all()
  np.testing.assert_array_equal(out[1:], np.asarray(seg)[1:])
  # With ignore_value, blended pixels whose maps differ are ignored.
  out = np.asarray(cj.apply_tree(draw, {"seg": seg}, ignore_value=255)["seg"])
  np.testing.assert_array_equal(out[0, 0, :5], [255, 255, 255, 4, 1])
  # Blend leaves blend.
  image = _ids((H, W, 1)).astype(jnp.float32)
  got = cj.apply_tree(draw, {"image": image})["image"]
  np.testing.assert_allclose(got[0, 0, :5, 0], [1.75, 2.5, 3.25, 4.0, 1.0])


def test_errors_name_the_draw_and_what_was_wrong():
  x = jnp.zeros((B, H, W, 3))
  with pytest.raises(TypeError,
                     match="MixParams, MaskParams or CuboidParams.*dict"):
    cj.apply_params({"lam": LAM}, x)
  for fn in (lambda p: cj.mix_labels(p, jnp.arange(B), num_classes=K),
             lambda p: cj.apply_tree(p, {"x": x}),
             lambda p: cj.mix_boxes(p, jnp.zeros((B, 1, 4)),
                                    jnp.zeros((B, 1)), jnp.ones((B, 1), bool))):
    with pytest.raises(TypeError, match="CuboidParams.*got tuple"):
      fn((LAM, BOX))
  with pytest.raises(ValueError, match="no time axis 'T'.*CuboidParams"):
    cj.apply_params(_cuboid_draw(), x, layout="NHWC")
  with pytest.raises(ValueError, match="rank 4 but layout 'NTHWC'"):
    cj.apply_params(_cuboid_draw(), x)  # a cuboid's default layout
  with pytest.raises(ValueError, match=r"drawn for \(3, 6, 8\)"):
    cj.apply_params(_cuboid_draw(), jnp.zeros((B, T + 1, H, W, 3)))
  with pytest.raises(ValueError, match="masks are"):
    cj.apply_params(_mask_draw(), jnp.zeros((B, H + 1, W, 3)))
  with pytest.raises(ValueError, match="batch size 5"):
    cj.apply_params(_mask_draw(), jnp.zeros((B + 1, H, W, 3)))
  boxes = jnp.zeros((B, 1, 4))
  classes, valid = jnp.zeros((B, 1)), jnp.ones((B, 1), bool)
  with pytest.raises(TypeError, match="a mask is not a rectangle"):
    cj.mix_boxes(_mask_draw(), boxes, classes, valid)
  with pytest.raises(TypeError, match="cuboid covers only some frames"):
    cj.mix_boxes(_cuboid_draw(), boxes, classes, valid)
  # The box draw of the same region is accepted.
  assert cj.mix_boxes(_box_draw(), boxes, classes, valid).boxes.shape == (
      B, 1, 4)


@pytest.mark.parametrize("make", [_box_draw, _mask_draw, _cuboid_draw])
@pytest.mark.parametrize("stride", [1, 2, (3, 4)])
def test_field_is_the_region_at_each_patch_top_left(make, stride):
  # The field every output (token masks, say) reads: where each sample
  # takes its partner, per pixel or at each patch's top-left pixel.
  sh, sw = (stride, stride) if isinstance(stride, int) else stride
  field = make().field(H, W, stride=stride)
  assert field.dtype == jnp.bool_
  want = _expected_source() != np.arange(1, B + 1)[:, None, None]
  np.testing.assert_array_equal(field, want[:, ::sh, ::sw])


def test_field_is_float_where_the_draw_blends():
  lam = jnp.array([0.25, 1.0, 0.5, 0.75], jnp.float32)
  op = jnp.array([cj.Op.MIXUP, cj.Op.NONE, cj.Op.CUTMIX, cj.Op.MIXUP],
                 jnp.int32)
  mix = cj.MixParams(lam=lam, box=BOX, partner=PARTNER, op=op, height=H,
                     width=W, ops=(int(cj.Op.CUTMIX), int(cj.Op.MIXUP)))
  field = np.asarray(mix.field(H, W, stride=2))
  assert field.dtype == np.float32
  np.testing.assert_array_equal(field[0], 0.75)  # MixUp: 1 - lam everywhere
  np.testing.assert_array_equal(field[1], 0.0)
  np.testing.assert_array_equal(field[3], 0.25)
  np.testing.assert_array_equal(
      field[2], np.asarray(cj.box_mask(BOX[2], H, W))[::2, ::2])
  soft = jnp.linspace(0, 1, B * H * W, dtype=jnp.float32).reshape(B, H, W)
  soft_field = _mask_draw(soft).field(H, W, stride=2)
  assert soft_field.dtype == jnp.float32
  # Sample 1's op is NONE: it takes nothing, whatever its mask says.
  want = np.asarray(soft)[:, ::2, ::2] * (np.asarray(OP) != 0)[:, None, None]
  np.testing.assert_array_equal(soft_field, want)


@pytest.mark.parametrize("make", [_box_draw, _mask_draw, _cuboid_draw])
def test_label_pairs_give_the_mixed_labels(make):
  # (partner, lam) is all a label output needs: the dense targets of
  # `mix_labels` follow from it bit for bit.
  # Sample 1's op is NONE: its lam must read 1, whatever the draw holds.
  draw = dataclasses.replace(make(), lam=LAM.at[1].set(0.3))
  partner, lam = draw.label_pairs()
  np.testing.assert_array_equal(partner, PARTNER)
  np.testing.assert_array_equal(lam, np.where(np.asarray(OP) != 0, LAM, 1))
  labels = jnp.array([0, 4, 2, 2])
  t = np.eye(K, dtype=np.float32)[np.asarray(labels)]
  lam = np.asarray(lam)[:, None]
  want = np.where(lam == 1, t, t[PARTNER] + lam * (t - t[PARTNER]))
  np.testing.assert_array_equal(
      cj.mix_labels(draw, labels, num_classes=K), want)
