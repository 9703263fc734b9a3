"""The benchmark runs end to end and writes well-formed results.

Only the structure is checked, never a timing: timings belong to the
published run on a quiet machine.
"""

import json
import math
import os
import subprocess
import sys
import pathlib

import pytest

# The module's fixture runs `python -m bench --quick` in a subprocess.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]

COLUMNS = ("section", "name", "mode", "dtype", "shape", "note")
TIMING = ("median_ms", "min_ms", "max_ms", "ratio", "reps")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  cmd = [
      sys.executable, "-m", "bench", "--quick", "--out", str(out),
      # A subset keeps compile time down; --quick alone covers every op.
      "--ops", "cutmix", "mixup", "cutout", "--modes", "elem",
      "--dtypes", "uint8", "--train-augs", "cutmix",
      # The roofline and loaders sections have their own tests
      # (test_roofline.py, test_bench_loaders.py).
      "--no-roofline", "--no-loaders",
  ]
  # No timing is checked, so the bench (and its cross-device child) may
  # compile without XLA's optimisations, which halves its compile time.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=600, check=False, env=env)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout


def test_help_documents_flags():
  proc = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                        capture_output=True, text=True, check=True)
  for flag in ("--quick", "--out", "--shapes", "--dtypes", "--reps",
               "--no-peers", "--no-train", "--only-roofline"):
    assert flag in proc.stdout


def test_writes_json_and_markdown(quick_run):
  out, stdout = quick_run
  report = json.loads((out / "results.json").read_text())
  assert set(report) >= {"command", "machine", "versions", "config", "rows",
                         "skipped"}
  assert report["machine"]["cpu_count"] >= 1
  assert report["machine"]["device_kind"]
  assert report["versions"]["jax"]
  md = (out / "results.md").read_text()
  assert "| section |" in md and "x copy" in md
  assert "machine:" in stdout and "x copy" in stdout


def test_rows_cover_every_requested_op_and_mode(quick_run):
  out, _ = quick_run
  rows = json.loads((out / "results.json").read_text())["rows"]
  for r in rows:
    assert set(COLUMNS) <= set(r)
  ops = {(r["name"], r["mode"]) for r in rows
         if r["section"] == "op" and r["median_ms"] is not None}
  failed = [r for r in rows if str(r.get("note", "")).startswith("FAILED")]
  assert not failed, failed
  for op in ("cutmix", "mixup", "cutout"):
    assert (op, "elem") in ops
  timed = [r for r in rows if r.get("median_ms") is not None]
  for r in timed:
    for k in TIMING:
      assert k in r, (k, r)
    assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["ratio"] > 0 and math.isfinite(r["ratio"])
    assert r["reps"] >= 3
  copies = [r for r in rows if r["section"] == "copy"]
  assert copies and all(r["ratio"] == 1.0 for r in copies)
  assert any(r["section"] == "reference" for r in rows)
  assert any(r["section"] == "draw" for r in rows)


def test_train_section_or_reason(quick_run):
  out, _ = quick_run
  report = json.loads((out / "results.json").read_text())
  train = [r for r in report["rows"] if r["section"] == "train"]
  if not train:  # train/ not importable: the reason must be reported
    assert any("train" in s for s in report["skipped"])
    return
  names = {r["name"] for r in train}
  assert "tiny step, aug none" in names and "tiny step, aug cutmix" in names


def test_missing_peers_are_skipped_not_errors(quick_run):
  out, _ = quick_run
  report = json.loads((out / "results.json").read_text())
  for peer in ("timm", "torchvision", "keras"):
    if report["versions"].get(peer) is None:
      assert any(s.split(": ", 1)[-1].startswith(peer)
                 for s in report["skipped"])


def test_cross_device_section(quick_run):
  out, _ = quick_run
  report = json.loads((out / "results.json").read_text())
  rows = [r for r in report["rows"] if r["section"] == "cross-device"]
  assert not [s for s in report["skipped"] if "cross-device" in s]
  names = {r["name"] for r in rows}
  for op in ("cutmix", "mixup"):
    for variant in ("inside each shard", "cross_device flip",
                    "cross_device roll"):
      assert f"{op}, {variant}" in names
  assert all(r["ratio"] > 0 and "8 cpu devices" in r["note"] for r in rows)
