"""The bench's loaders section: one row per loader, from the trainer's own
loop. Structure only, never a timing."""

import json

import pytest

from bench import run as run_lib


@pytest.mark.slow
def test_loaders_section_rows(tmp_path, fast_compile):
  out = tmp_path / "bench"
  assert run_lib.main([
      "--only-loaders", "--quick", "--loader-workers", "0",
      "--loader-steps", "1", "--loader-reps", "2", "--loader-warmup", "1",
      "--out", str(out)]) == 0
  report = json.loads((out / "results.json").read_text())
  assert not report["skipped"], report["skipped"]
  assert report["roofline"] is None  # nothing else ran
  rows = report["rows"]
  assert [r["name"] for r in rows] == [
      f"train step, --loader {n}" for n in ("memory", "grain", "device")]
  for r in rows:
    assert r["section"] == "loaders" and r["shape"] == "16x32x32x3"
    assert r["reps"] == 2 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["img_s"] == pytest.approx(16 / r["median_ms"] * 1e3)
    assert "img/s; tiny" in r["note"]
  assert rows[0]["ratio"] == 1.0  # relative to the memory loader
  assert "--loader device" in (out / "results.md").read_text()
