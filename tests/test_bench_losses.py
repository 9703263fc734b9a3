"""The bench's loss section: its rows and table, never its timings."""

import argparse

import pytest

from bench import losses
from bench import run


def test_a_row_holds_times_memory_and_goals():
  args = argparse.Namespace(reps=3, target_ms=1.0)
  row = losses.case(args, "softmax", "logits", 8, 21843)
  assert row["section"] == "loss" and row["shape"] == "8x21843"
  assert row["ratio"] > 0 and row["dense_ms"] > 0 and row["kway_ms"] > 0
  for path in ("dense", "kway"):
    memory = row[f"{path}_bytes"]
    assert memory["total"] == (memory["argument"] + memory["temp"]
                               + memory["output"])
  # Both take the same logits and return a gradient of their size.
  assert row["kway_bytes"]["output"] == row["dense_bytes"]["output"]
  assert row["saved_bytes"] == (row["dense_bytes"]["total"]
                                - row["kway_bytes"]["total"])
  assert row["memory_goal"] is not None and row["time_goal"] is not None
  lines = losses.table_lines([row, {"section": "op"}])
  assert len(lines) == 3 and "| logits | softmax | 8 | 21,843 |" in lines[2]


def test_head_rows_take_features_and_weights():
  inputs, labels, draw = losses.make_inputs("head", 4, 10)
  assert inputs[0].shape == (4, losses.FEATURES)
  assert inputs[1].shape == (losses.FEATURES, 10)
  _, grads = losses.make_fns("sigmoid", "head", 10)["kway"](inputs, labels,
                                                            draw)
  assert grads[1].shape == (losses.FEATURES, 10)


def test_flags():
  args = run.parse_args(["--only-loss", "--loss-batches", "4",
                         "--loss-classes", "10", "20"])
  assert args.only_loss and args.loss_batches == [4]
  assert args.loss_classes == [10, 20]
  assert run.parse_args([]).loss_classes == list(losses.CLASSES)
  with pytest.raises(SystemExit):
    run.parse_args(["--only-loss", "--no-loss"])
