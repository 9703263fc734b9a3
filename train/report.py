"""A study's report: its summary (`summary`) as results.json, results.md
(the tables, the paired comparisons and the provenance of the runs) and
results.png."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np

from train import occlusion
from train import summary as summary_lib
from train.evaluation import FRACTIONS

LABELS = {"none": "baseline", "cutmix": "CutMix", "mixup": "MixUp",
          "cutout": "Cutout", "mix": "MixUp/CutMix switch",
          "transmix": "TransMix"}


CONDITION_TITLES = {"pool": "pool", "clean": "clean", "centre25": "centre 25%",
                    "centre50": "centre 50%", "random25": "random 25%",
                    "random50": "random 50%"}


def summarize(out: str) -> Optional[dict[str, Any]]:
  """Merges `<out>/runs/*.json` into results.json, results.md, results.png;
  returns the summary (None without runs)."""
  run_dir = os.path.join(out, "runs")
  records = summary_lib.load_records(run_dir)
  if not records:
    print(f"No finished runs in {run_dir}.")
    return None
  summary = summary_lib.summarize_runs(records, run_dir)
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(summary, f, indent=1)
  design = summary_lib.design_of(records)
  lines = markdown(summary, design, records[0]["image_hw"])
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write("\n".join(lines))
  _plot(summary["methods"], summary["paired_vs_baseline"],
        os.path.join(out, "results.png"), summary["settings"],
        design.conditions)
  print("\n".join(lines[4:5 + len(summary["methods"]) + 1]))
  return summary


def markdown(summary: dict[str, Any], design: summary_lib.Design,
             image_hw: tuple[int, int]) -> list[str]:
  """The lines of results.md for `summary`, made under `design` from runs
  on images of `image_hw`."""
  table, paired = summary["methods"], summary["paired_vs_baseline"]
  methods = list(table)
  s = summary["settings"]
  h, w = image_hw
  sizes = {f: occlusion.box_size(f, h, w) for f in FRACTIONS}
  fill = ("the training mean colour (zero in the network's normalised input)"
          if s["fill"] == "mean" else "black (raw 0)")
  lines = [
      "# CIFAR-10: " + " vs ".join(LABELS[m] for m in methods),
      "",
      ("Accuracy (%), mean ± sample std over seeds, on the evaluation pool "
       f"(pool: the {summary['pool']['n']:,} images no run trains on, the "
       "test set included), on the 10,000 clean test images (clean) and on "
       "occluded copies of them." if "pool" in design.conditions else
       "Test accuracy (%), mean ± sample std over seeds, on the 10,000 clean "
       "test images and on occluded copies."),
      "",
      "| method | seeds | prob | " + " | ".join(
          CONDITION_TITLES[c] for c in design.conditions) + " |",
      "|---|---|---|" + "---|" * len(design.conditions),
  ]
  for m, row in table.items():
    lines.append(f"| {LABELS[m]} | {len(row['seeds'])} | "
                 f"{row['prob'] if m != 'none' else '–'} | "
                 + " | ".join(_cell(row[c]) for c in design.conditions)
                 + " |")
  lines += _analysis_lines(table, paired, summary["gate"], design)
  subset = s["train_subset"] or "all 50,000"
  lines += [
      "",
      f"- Model {s['model']} (width {s['width'] or 'of the preset'}), "
      f"{s['epochs']} epochs, batch {s['batch_size']}, "
      + ("AdamW (decoupled decay) " if s.get("optimizer") == "adamw" else
         "SGD (Nesterov, momentum 0.9) ")
      + f"lr {s['lr']} "
      f"with {s['warmup_epochs']} warmup epoch(s) then {s['schedule']} decay, "
      f"weight decay {s['weight_decay']}, random crop (pad 4) and flip for "
      f"every method; training images: {subset}.",
      _method_settings_line(table, s, h, w),
      f"- Occlusion: centre box, or one random box per image (seed "
      f"{s['occlusion_seed']}, the same for every model) wholly inside the "
      f"image, filled with {fill}. Box sizes: " + ", ".join(
          f"{round(f * 100)}% → {hw[0]}×{hw[1]} = {hw[0] * hw[1]} px "
          f"({100 * hw[0] * hw[1] / (h * w):.1f}%)" for f, hw in sizes.items())
      + ".",
      "- Seeds per method: " + ", ".join(
          f"{LABELS[m]} {row['seeds']}" for m, row in table.items())
      + f" ({summary['runs']} runs).",
      "- Command(s): " + "; ".join(f"`{c}`" for c in summary["commands"]),
      "- Source commit(s) of the runs: " + ", ".join(
          "not recorded" if c == "None" else c for c in summary["commits"])
      + ".",
      _machines_line(summary["machines"]),
      "- Mean training time per run: " + ", ".join(
          f"{LABELS[m]} {row['train_seconds'] / 60:.1f} min"
          for m, row in table.items()) + ".",
      "",
      "![accuracy by condition](results.png)",
      "",
  ]
  return lines


def _cell(d, scale=100, digits=2) -> str:
  """`mean ± std` of a summary entry, scaled (percent by default)."""
  if d["std"] is None:
    return f"{scale * d['mean']:.{digits}f}"
  return f"{scale * d['mean']:.{digits}f} ± {scale * d['std']:.{digits}f}"


_MACHINE_FIELDS = (("cpu", "{}"), ("cores", "{} cores"), ("platform", "{}"),
                   ("python", "Python {}"), ("jax", "jax {}"),
                   ("devices", "{}"))


def _machines_line(machines: list[dict[str, str]]) -> str:
  """One line naming each distinct machine the runs were made on."""
  # Every recorded field is named: runs of one study can differ only in, say,
  # the kernel, and two identical-looking entries would read as a bug. Fields
  # a record lacks (runs made before they were recorded) are left out.
  return "- Machine(s): " + "; ".join(
      ", ".join(form.format(m[field]) for field, form in _MACHINE_FIELDS
                if field in m) for m in machines)


def _method_settings_line(table: dict[str, Any], s: dict[str, Any], h: int,
                          w: int) -> str:
  """One line naming the mixing settings of the methods in `table`."""
  # Built per method present: runs recorded before the switch existed lack
  # its settings.
  def describe(m: str) -> str:
    if m in ("cutmix", "mixup"):
      return f"{LABELS[m]} α = {s['alpha']}"
    if m in ("mix", "transmix"):
      labels = (" with TransMix's labels from the last block's attention"
                if m == "transmix" else "")
      return (f"{LABELS[m]}: MixUp α = {s['mixup_alpha']}, CutMix "
              f"α = {s['alpha']}, CutMix with chance {s['switch_prob']}"
              f"{labels}")
    side = s.get("cutout_size")
    return "Cutout " + (f"{side}×{side} box" if side else
                        f"{max(h // 2, 1)}×{max(w // 2, 1)} box (half the side)")

  parts = [f"{describe(m)}, mode {row['mode']}" for m, row in table.items()
           if m != "none"]
  if not parts:
    return "- No mixing method."
  return "- " + "; ".join(parts) + "; prob as in the table."


def _p(p: Optional[float]) -> str:
  if p is None:
    return "–"
  return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _analysis_lines(table, paired, gate, design: summary_lib.Design) -> list[str]:
  """Markdown for kept fractions, final losses and the paired comparisons."""
  occluded = design.occluded

  lines = ["", "Fraction of clean accuracy kept under occlusion (%, occluded / "
           "clean per run, then mean ± std):", "",
           "| method | " + " | ".join(CONDITION_TITLES[c] for c in occluded)
           + " |", "|---|" + "---|" * len(occluded)]
  for m, row in table.items():
    lines.append(f"| {LABELS[m]} | "
                 + " | ".join(_cell(row["kept"][c]) for c in occluded) + " |")
  if all("train_loss" in row for row in table.values()):
    lines += ["", "Final losses (mean ± std): the training loss is the last "
              "epoch's mean over its (augmented, for mixing methods: mixed) "
              "batches.", "", "| method | train loss | test loss |",
              "|---|---|---|"]
    for m, row in table.items():
      lines.append(f"| {LABELS[m]} | {_cell(row['train_loss'], 1, 3)} | "
                   f"{_cell(row['test_loss'], 1, 3)} |")
  if gate is not None:
    lines += ["", f"Overfitting gate (baseline test loss ≥ 2 × train loss): "
              f"ratio {gate['test_over_train_loss']:.2f}, "
              f"{'passed' if gate['passed'] else 'NOT passed'}."]
  if not paired:
    return lines
  lines += ["", "Paired difference against the baseline (points), mean ± SE "
            "over the seeds both have; two-sided paired t-test p, and Holm's "
            "adjusted p over every comparison but the primary one"
            + (" (the kept fractions below included)" if design.kept_in_holm
               else "") + ":", "",
            "| method | seeds | " + " | ".join(
                CONDITION_TITLES[c] for c in design.conditions) + " |",
            "|---|---|" + "---|" * len(design.conditions)]

  def diff(d):
    if d["se"] is None:
      return "–" if d["mean"] is None else f"{d['mean']:+.2f}"
    text = f"{d['mean']:+.2f} ± {d['se']:.2f} (p {_p(d['p'])}"
    if "p_holm" in d:
      text += f", Holm {_p(d['p_holm'])}"
    return text + ")"

  for m, row in paired.items():
    lines.append(f"| {LABELS[m]} | {len(row['seeds'])} | " + " | ".join(
        diff(row["accuracy"][c]) for c in design.conditions) + " |")
  lines += ["", "The same for the fraction of clean accuracy kept (points):",
            "", "| method | " + " | ".join(
                CONDITION_TITLES[c] for c in occluded) + " |",
            "|---|" + "---|" * len(occluded)]
  for m, row in paired.items():
    lines.append(f"| {LABELS[m]} | " + " | ".join(
        diff(row["kept"][c]) for c in occluded) + " |")
  m, c = design.primary
  if m in paired:
    d = paired[m]["accuracy"][c]
    if d["se"] is not None:
      lines += ["", f"Primary test ({LABELS[m]} − baseline, {c} accuracy): "
                f"{d['mean']:+.2f} ± {d['se']:.2f} points over {d['n']} "
                f"paired seeds, t({d['n'] - 1}) = {d['t']:.2f}, "
                f"p = {_p(d['p'])}."]
      if "tost" in d:
        lines += _equivalence_lines(d, design.margin)
  return lines


def _equivalence_lines(d: dict[str, Any], margin: float) -> list[str]:
  """The TOST, the registered combined reading and the achieved power."""
  tost = d["tost"]
  lo, hi = tost["ci"]
  different, equivalent = d["p"] < 0.05, tost["p"] < 0.05
  direction = "gain" if d["mean"] > 0 else "loss"
  reading = {
      (True, True): f"a {direction}, smaller than {margin} points",
      (True, False): f"a {direction}, not shown to be smaller than {margin} "
                     "points",
      (False, True): f"no difference of {margin} points or more (equivalent "
                     f"within ±{margin})",
      (False, False): "inconclusive: neither a difference nor equivalence "
                      f"within ±{margin} points is shown",
  }[(different, equivalent)]
  return [
      "",
      f"Equivalence (TOST at ±{margin} points): {100 * tost['level']:.0f}% "
      f"CI {lo:+.2f} to {hi:+.2f}, p = {_p(tost['p'])}"
      f" ({'inside' if equivalent else 'not inside'} the margin).",
      "",
      f"Registered reading (both tests at 0.05): {reading}.",
      "",
      f"Achieved power of the primary test for a ±{margin}-point difference "
      f"at the observed SD of the differences "
      f"({np.std(d['values'], ddof=1):.2f} points, {d['n']} pairs): "
      f"{d['power_at_margin']:.2f}.",
  ]


def _plot(table, paired, path, s, conditions):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(15, 4.5),
                                    gridspec_kw=dict(width_ratios=(3, 2)))
  _plot_paired(ax_diff, paired, conditions)
  n = len(table)
  for i, (m, row) in enumerate(table.items()):
    x = np.arange(len(conditions)) + (i - (n - 1) / 2) * 0.8 / n
    means = [100 * row[c]["mean"] for c in conditions]
    errs = [100 * (row[c]["std"] or 0) for c in conditions]
    ax.bar(x, means, 0.8 / n, yerr=errs, capsize=2,
           label=f"{LABELS[m]} ({len(row['seeds'])} seeds)")
  ax.set_xticks(np.arange(len(conditions)),
                [CONDITION_TITLES[c] for c in conditions])
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"CIFAR-10, {s['model']} width {s['width'] or 'preset'}, "
               f"{s['epochs']} epochs: clean and occluded test accuracy")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_paired(ax, paired, conditions):
  """Paired differences against the baseline, mean ± SE, per condition."""
  if not paired:
    ax.set_axis_off()
    return
  n = len(paired)
  for i, (m, row) in enumerate(paired.items()):
    x = np.arange(len(conditions)) + (i - (n - 1) / 2) * 0.8 / n
    d = [row["accuracy"][c] for c in conditions]
    ax.errorbar(x, [v["mean"] for v in d], yerr=[v["se"] or 0 for v in d],
                fmt="o", capsize=3,
                label=f"{LABELS[m]} ({len(row['seeds'])} paired seeds)")
  ax.axhline(0, color="k", lw=0.8)
  ax.set_xticks(np.arange(len(conditions)),
                [CONDITION_TITLES[c] for c in conditions])
  ax.set_ylabel("minus baseline (points), mean ± SE")
  ax.set_title("Paired difference against the baseline")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
