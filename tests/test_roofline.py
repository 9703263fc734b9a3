"""The roofline section: its loop really applies the op n times, and its
rows, goals and spec sheet are well formed. Structure only, never a timing."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import roofline
from bench import run as run_lib

SHAPE = (4, 8, 8, 3)


@pytest.mark.parametrize("op,mode,dtype", [
    ("cutmix", "elem", "uint8"), ("mixup", "elem", "float32"),
    ("fmix", "batch", "uint8"), ("copy", "-", "uint8")])
def test_loop_applies_the_op_n_times(op, mode, dtype):
  fn = roofline.op_images(op, mode, SHAPE)
  key = jax.random.key(3)
  x = jnp.asarray(run_lib.make_images(SHAPE, dtype))
  y = jnp.arange(SHAPE[0]) % 10
  loop = roofline.looped(fn)
  one = jax.jit(fn)
  expected = x
  for i in range(3):
    expected = one(jax.random.fold_in(key, i), expected, y)
  out = loop(key, x, y, 3)
  assert out.dtype == x.dtype and out.shape == x.shape
  np.testing.assert_array_equal(out, expected)
  # One compile for every trip count: the loop is not unrolled.
  assert not np.array_equal(loop(key, x, y, 2), out)
  if op == "cutmix":  # a select is exact eagerly too
    eager = x
    for i in range(3):
      eager = fn(jax.random.fold_in(key, i), eager, y)
    np.testing.assert_array_equal(out, eager)


def test_spec_sheet_and_goals():
  assert roofline.spec_hbm("NVIDIA H100 80GB HBM3")[0] == 3.35
  assert roofline.spec_hbm("NVIDIA H100 PCIe")[0] == 2.0
  assert roofline.spec_hbm("NVIDIA H200")[0] == 4.8
  assert roofline.spec_hbm("cpu")[0] is None
  goal = lambda *a: roofline._goal(*a)  # pylint: disable=protected-access
  big = (1024, 224, 224, 3)
  assert goal("mix", "elem", "uint8", big, "NVIDIA H200", 0.9, 8e6)[1] == (
      "yes; yes")
  assert goal("mix", "elem", "uint8", big, "NVIDIA H200", 0.7, 8e6)[1] == (
      "NO; yes")
  # The img/s goal is an H200's: on an H100 only the copy fraction counts.
  assert goal("mix", "elem", "uint8", big, "NVIDIA H100 80GB HBM3", 0.9,
              1e6)[1] == "yes; -"
  assert goal("cutmix", "elem", "bfloat16", SHAPE, "cpu", 0.1, 1)[1].startswith(
      "- (not")
  assert goal("cutmix", "batch", "uint8", SHAPE, "NVIDIA H200", 0.1, 1) == (
      "-", "-")
  assert goal("cutmix", "elem", "float32", SHAPE, "NVIDIA H200", 0.1, 1) == (
      "-", "-")
  assert goal("fmix", "elem", "uint8", SHAPE, "NVIDIA H200", 0.1, 1)[0].startswith(
      "none")


def test_only_roofline_flag(tmp_path):
  out = tmp_path / "bench"
  assert run_lib.main([
      "--only-roofline", "--quick", "--roofline-ops", "cutmix", "cutout",
      "--roofline-modes", "elem", "--roofline-dtypes", "uint8",
      "--roofline-shapes", "4x8x8x3", "--roofline-iters", "2",
      "--out", str(out)]) == 0
  report = json.loads((out / "results.json").read_text())
  assert report["rows"] == []  # nothing but the roofline ran
  rows = report["roofline"]["rows"]
  assert [(r["name"], r["mode"]) for r in rows] == [
      ("copy", "-"), ("cutmix", "elem"), ("cutout", "elem")]
  passes = {r["name"]: r["passes"] for r in rows}
  assert passes == {"copy": 2, "cutmix": 3, "cutout": 2}
  for r in rows:
    assert r["iters"] == 2 and r["batch_mb"] == pytest.approx(4 * 192 / 1e6)
    assert r["gb_s"] > 0 and r["copy_fraction"] > 0 and r["img_s"] > 0
    assert r["gb_s"] == pytest.approx(
        r["passes"] * r["batch_mb"] / r["ms_per_iter"])
  assert rows[1]["goal"].startswith(">= 80% copy")
  info = report["roofline"]["info"]
  assert info["device_kind"] == "cpu" and info["spec_hbm_tb_s"] is None
  md = (out / "results.md").read_text()
  assert "## Roofline" in md and "| H200 | 4.8 |" in md


def test_budget_skips_rows_and_says_so():
  args = argparse.Namespace(
      roofline_iters=1, roofline_reps=1, roofline_budget_s=0.0,
      roofline_shapes=["4x8x8x3"], roofline_dtypes=["uint8"],
      roofline_ops=["cutmix"], roofline_modes=["batch", "elem"])
  rows, skipped = roofline.section(args, log=lambda m: None)
  assert rows == []
  assert len(skipped) == 2 and all("budget" in s for s in skipped)
