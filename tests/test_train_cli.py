"""The `python -m train` command line."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from train import __main__ as cli
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
    (["--ema-decay", "1"], r"--ema-decay must be in \[0, 1\)"),
    (["--val-split", "1"], r"--val-split must be in \[0, 1\)"),
    (["--grad-accum", "0"], "--grad-accum must be >= 1"),
    (["--crop", "resized"], "--crop resized is done by --loader grain"),
    (["--crop", "resized", "--dataset", "imagefolder", "--data-dir", "x",
      "--loader", "memory"], "--crop resized is done by --loader grain"),
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


def test_a_workdir_that_is_a_file_is_one_line_before_any_data_is_read(
    tmp_path):
  blocker = tmp_path / "notes.txt"
  blocker.write_text("not a directory")
  # The data dir does not exist either: the workdir must be refused first.
  for workdir, says in ((blocker, "is a file"),
                        (blocker / "run", f"lies under {blocker}")):
    with pytest.raises(SystemExit) as e:
      cli.main(["--dataset", "imagefolder", "--data-dir",
                str(tmp_path / "missing"), "--workdir", str(workdir)])
    message = str(e.value.code)
    assert message.startswith(f"error: --workdir {workdir} "), message
    assert says in message and "\n" not in message
