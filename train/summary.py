"""A study's statistics: its runs' records merged under its pre-registered
design into one summary (results.json): per-method means and spreads, the
fractions of clean accuracy kept under occlusion, the final losses, the
paired comparisons against the baseline (t-tests, Holm's correction, and
the confirmatory design's TOST and power) and the overfitting gate.
`report` writes the summary as Markdown and a plot."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from train import occlusion
from train import stats
from train.evaluation import CONDITIONS
from train.evaluation import FRACTIONS
from train.runs import METHODS


@dataclasses.dataclass(frozen=True)
class Design:
  """A study's pre-registered analysis (its PROTOCOL.md).

  Attributes:
    conditions: the accuracy columns, in table order.
    primary: the primary comparison `(method, condition)` against the
      baseline; every other comparison is secondary, under Holm.
    kept_in_holm: whether the kept-fraction comparisons join Holm's family.
    margin: the equivalence margin (points) of a TOST on the primary
      comparison, or None for no equivalence test.
  """

  conditions: tuple[str, ...]
  primary: tuple[str, str]
  kept_in_holm: bool = False
  margin: Optional[float] = None

  @property
  def occluded(self) -> tuple[str, ...]:
    return tuple(c for c in self.conditions if c not in ("pool", "clean"))


# results/cifar10-5k/PROTOCOL.md: clean test accuracy is primary.
REGISTERED = Design(CONDITIONS, ("cutmix", "clean"))


# results/cifar10-5k-confirm/PROTOCOL.md: accuracy on the 55,000-image
# evaluation pool is primary, with a TOST at ±0.5 points; the 10k test
# accuracy, occlusion and kept fractions are the Holm family.
CONFIRMATORY = Design(("pool",) + CONDITIONS, ("cutmix", "pool"),
                      kept_in_holm=True, margin=0.5)


def design_of(records: Sequence[dict[str, Any]]) -> Design:
  """The confirmatory design for runs evaluated on a pool, else the first
  study's."""
  if all("pool" in r["accuracy"] for r in records):
    return CONFIRMATORY
  return REGISTERED


def _mean_std(values: list[float]) -> tuple[float, Optional[float]]:
  v = np.asarray(values, np.float64)
  return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def load_records(run_dir: str) -> list[dict[str, Any]]:
  """The run records `<run_dir>/*.json`, in file-name order."""
  records = []
  if os.path.isdir(run_dir):
    for name in sorted(os.listdir(run_dir)):
      if name.endswith(".json"):
        with open(os.path.join(run_dir, name)) as f:
          records.append(json.load(f))
  return records


def summarize_runs(records: Sequence[dict[str, Any]], run_dir: str
                   ) -> dict[str, Any]:
  """The summary of `records` (from `run_dir`, named in errors).

  Raises:
    SystemExit: the runs have other shared settings, or were evaluated on
      different pools: they cannot share one table.
  """
  # Runs are comparable only with one shared setting (per-method prob apart).
  shared = lambda r: {k: v for k, v in r["settings"].items()
                      if k not in ("aug", "seed", "prob", "mode")}
  if any(shared(r) != shared(records[0]) for r in records):
    raise SystemExit(f"error: the runs in {run_dir} have different settings; "
                     "they cannot share one table.")
  methods = [m for m in METHODS if any(r["method"] == m for r in records)]
  design = design_of(records)
  table = {}
  for m in methods:
    rs = sorted((r for r in records if r["method"] == m),
                key=lambda r: r["seed"])
    row = dict(seeds=[r["seed"] for r in rs],
               prob=rs[0]["settings"]["prob"], mode=rs[0]["settings"]["mode"])
    for c in design.conditions:
      mean, std = _mean_std([r["accuracy"][c] for r in rs])
      row[c] = dict(mean=mean, std=std, values=[r["accuracy"][c] for r in rs])
    row["kept"] = {}
    for c in design.occluded:
      kept = [r["accuracy"][c] / r["accuracy"]["clean"] for r in rs]
      mean, std = _mean_std(kept)
      row["kept"][c] = dict(mean=mean, std=std, values=kept)
    for loss in ("train_loss", "test_loss"):
      values = [r["trainer_final"].get(loss) for r in rs]
      if None not in values:
        mean, std = _mean_std(values)
        row[loss] = dict(mean=mean, std=std, values=values)
    row["train_seconds"] = _mean_std([r["train_seconds"] for r in rs])[0]
    table[m] = row
  paired = paired_vs_baseline(records, methods, design)
  first = records[0]
  h, w = first["image_hw"]
  sizes = {f: occlusion.box_size(f, h, w) for f in FRACTIONS}
  summary = dict(
      settings=shared(first), conditions=list(design.conditions),
      box_sizes={f"{round(f * 100)}": dict(h=hw[0], w=hw[1],
                                           fraction=hw[0] * hw[1] / (h * w))
                 for f, hw in sizes.items()},
      methods=table, paired_vs_baseline=paired, gate=_gate(table),
      commands=sorted({r["command"] for r in records}),
      commits=sorted({str(r.get("commit")) for r in records}),
      machines=[dict(t) for t in sorted({tuple(sorted(
          (k, str(v)) for k, v in r["machine"].items())) for r in records})],
      runs=len(records))
  if "pool" in design.conditions:
    summary["pool"] = dict(n=first["pool"]["n"],
                           files_sha256=first["pool"]["files_sha256"])
    if any(r["pool"]["files_sha256"] != summary["pool"]["files_sha256"]
           for r in records):
      raise SystemExit(f"error: the runs in {run_dir} were evaluated on "
                       "different pools; they cannot share one table.")
  return summary


def paired_vs_baseline(records, methods, design: Design) -> dict[str, Any]:
  """Each method minus the baseline on the seeds both have, in points (%).

  Accuracy differences get a paired t-test, and Holm's correction over every
  comparison except the primary one; the kept fractions (occluded / clean)
  get their own t-test, inside Holm's family where the design says so. The
  primary comparison also gets the design's equivalence test (TOST).
  """
  if "none" not in methods:
    return {}
  by_key = {(r["method"], r["seed"]): r for r in records}
  out = {}
  for m in methods:
    if m == "none":
      continue
    seeds = sorted(s for (mm, s) in by_key if mm == m and ("none", s) in by_key)
    pairs = [(by_key[(m, s)], by_key[("none", s)]) for s in seeds]
    acc = {c: stats.paired([100 * a["accuracy"][c] for a, _ in pairs],
                           [100 * b["accuracy"][c] for _, b in pairs])
           for c in design.conditions}
    kept = {c: stats.paired(
        [100 * a["accuracy"][c] / a["accuracy"]["clean"] for a, _ in pairs],
        [100 * b["accuracy"][c] / b["accuracy"]["clean"] for _, b in pairs])
            for c in design.occluded}
    out[m] = dict(seeds=seeds, accuracy=acc, kept=kept)
  family = [(m, "accuracy", c) for m in out for c in design.conditions
            if (m, c) != design.primary]
  if design.kept_in_holm:
    family += [(m, "kept", c) for m in out for c in design.occluded]
  adjusted = stats.holm([out[m][kind][c]["p"] for m, kind, c in family])
  for (m, kind, c), p in zip(family, adjusted):
    out[m][kind][c]["p_holm"] = p
  m, c = design.primary
  if design.margin is not None and m in out:
    primary = out[m]["accuracy"][c]
    primary["tost"] = stats.tost(primary["values"], design.margin)
    sd = (float(np.std(primary["values"], ddof=1)) if primary["n"] > 1
          else None)
    primary["power_at_margin"] = (
        None if sd is None else stats.power_paired(design.margin, sd,
                                                   primary["n"]))
  return out


def _gate(table) -> Optional[dict[str, Any]]:
  """The protocol's overfitting gate: baseline test loss >= 2 x train loss."""
  base = table.get("none", {})
  if "train_loss" not in base or "test_loss" not in base:
    return None
  ratio = base["test_loss"]["mean"] / base["train_loss"]["mean"]
  return dict(test_over_train_loss=ratio, passed=bool(ratio >= 2.0))
