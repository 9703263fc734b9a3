"""The `python -m train` command line."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from train import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_help_documents_every_option():
  out = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  for field in dataclasses.fields(config.Config):
    assert "--" + field.name.replace("_", "-") in out.stdout, field.name
  assert "cutmix" in out.stdout and "imagefolder" in out.stdout


def test_defaults_parse_to_the_config_defaults():
  assert config.parse_args([]) == config.Config()
  cfg = config.parse_args(["--aug", "mixup", "--width", "8", "--no-flip"])
  assert (cfg.aug, cfg.width, cfg.flip) == ("mixup", 8, False)


@pytest.mark.parametrize("argv, message", [
    (["--aug", "cutmixx"], "invalid choice: 'cutmixx'"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--prob", "1.5"], r"--prob must be in \[0, 1\]"),
    (["--epochs", "two"], "invalid int value"),
    (["--dataset", "cifar10"], "--dataset cifar10 needs --data-dir"),
])
def test_bad_values_are_usage_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    config.parse_args(argv)
  assert e.value.code == 2
  assert re.search(message, capsys.readouterr().err)


@pytest.mark.slow
def test_missing_data_dir_is_a_clean_error(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "train", "--dataset", "imagefolder",
       "--data-dir", str(tmp_path / "none"), "--workdir", str(tmp_path / "w")],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert "error: --data-dir" in out.stderr and "Traceback" not in out.stderr
