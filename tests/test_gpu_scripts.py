"""The GPU study scripts (`results/gpu/*.sh`) run end to end on CPU, on a
few hundred real CIFAR-10 images: a device call has no time to find out
that a script's Python has moved."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpg.zip"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ZIP.exists(),
                       reason=f"needs the CIFAR-10 zip at {ZIP}"),
]


def _run(script, env, tmp_path):
  full = dict(os.environ, PYTHON=sys.executable, EPOCHS="1", BATCH="64",
              DTYPE="float32", **env)
  # The tests' 8 simulated devices would split a batch of 64 eight ways.
  full.pop("XLA_FLAGS", None)
  out = subprocess.run(["bash", str(ROOT / "results" / "gpu" / script)],
                       env=full, cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def test_vit_tiny_and_resnet18_scripts_train_and_report(tmp_path):
  pack = tmp_path / "small.npz"
  subprocess.run([sys.executable, "-m", "bench.devdata", "pack", str(ZIP),
                  str(pack), "--train", "256", "--test", "64"], check=True,
                 cwd=ROOT, capture_output=True)
  cache = tmp_path / "cache"
  vit = tmp_path / "vit"
  _run("cifar10_vit_tiny.sh",
       dict(PACK=str(pack), METHODS="none,transmix", PARALLEL="1",
            CACHE=str(cache), RESULTS=str(vit), EXTRA="--width 48"), tmp_path)
  report = json.loads((vit / "results.json").read_text())
  assert sorted(report["methods"]) == ["none", "transmix"]
  run = json.loads((vit / "runs" / "transmix-s0.json").read_text())
  assert run["settings"]["model"] == "vit_tiny"
  assert run["settings"]["optimizer"] == "adamw"
  # The ResNet script, on the image folder the ViT script unpacked.
  resnet = tmp_path / "resnet"
  _run("cifar10_resnet18.sh",
       dict(DATA_DIR=str(cache / "cifar10" / "images"), METHODS="cutmix",
            CACHE=str(cache), RESULTS=str(resnet), EXTRA="--width 4"),
       tmp_path)
  run = json.loads((resnet / "runs" / "cutmix-s0.json").read_text())
  assert run["settings"]["model"] == "preact_resnet18"
  assert 0 <= run["accuracy"]["clean"] <= 1
