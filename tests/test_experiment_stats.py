"""The experiment summary's statistics: paired t-tests, Holm, and the table."""

import json
import os

import numpy as np
import pytest
import scipy.stats

from train import evaluation
from train import report
from train import stats
from train import summary


@pytest.mark.parametrize("n", [2, 3, 6, 8])
def test_paired_matches_scipy_ttest_rel(n):
  rng = np.random.default_rng(n)
  a = rng.normal(70, 1, n)
  b = a + rng.normal(0.4, 0.5, n)
  got = stats.paired(b, a)
  ref = scipy.stats.ttest_rel(b, a)
  np.testing.assert_allclose(got["t"], ref.statistic, rtol=1e-12)
  np.testing.assert_allclose(got["p"], ref.pvalue, rtol=1e-9)
  np.testing.assert_allclose(got["mean"], np.mean(b - a), rtol=1e-12)
  np.testing.assert_allclose(got["se"], scipy.stats.sem(b - a), rtol=1e-12)


@pytest.mark.parametrize("df", [1, 2, 5, 7, 30])
@pytest.mark.parametrize("t", [0.05, 0.7, 2.0, 2.57, 6.0, 40.0])
def test_t_two_sided_p_matches_scipy(t, df):
  np.testing.assert_allclose(stats.t_two_sided_p(t, df),
                             2 * scipy.stats.t.sf(t, df), rtol=1e-9)
  assert stats.t_two_sided_p(-t, df) == stats.t_two_sided_p(t, df)


def test_paired_degenerate_cases():
  assert stats.paired([1.0], [0.0])["p"] is None
  same = stats.paired([2.0, 3.0], [1.0, 2.0])  # identical differences
  assert same["se"] == 0 and same["p"] == 0.0
  assert stats.paired([1.0, 2.0], [1.0, 2.0])["p"] == 1.0


def test_holm_step_down():
  # Sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone: 0.03, 0.06, 0.06.
  np.testing.assert_allclose(
      stats.holm([0.01, 0.04, 0.03, None])[:3], [0.03, 0.06, 0.06])
  assert stats.holm([0.01, None])[1] is None
  assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def _record(method, seed, clean, occluded, train_loss, test_loss):
  settings = dict(model="resnet20", width=8, epochs=80, batch_size=128,
                  lr=0.1, weight_decay=5e-4, schedule="cosine",
                  warmup_epochs=1.0, alpha=1.0, prob=0.5, mode="batch",
                  cutout_size=None, label_smoothing=0.0, mixup_alpha=0.8,
                  switch_prob=0.5, aug=method, seed=seed, train_subset=5000,
                  fill="mean", occlusion_seed=0)
  accuracy = dict(clean=clean, **{c: occluded
                                  for c in evaluation.CONDITIONS[1:]})
  return dict(method=method, seed=seed, settings=settings, accuracy=accuracy,
              trainer_final=dict(train_loss=train_loss, test_loss=test_loss),
              train_seconds=60.0, image_hw=[32, 32], command="cmd",
              commit="abc", machine=dict(cpu="cpu", cores=2, jax="0",
                                         devices="[cpu]"))


def test_summary_pairs_by_seed_and_reports_the_protocols_analysis(tmp_path):
  base = {0: 0.70, 1: 0.69, 2: 0.71}
  gain = {0: 0.006, 1: 0.001, 2: 0.004}
  os.makedirs(tmp_path / "runs")
  records = [_record("none", s, base[s], 0.2, 0.3, 1.1) for s in base]
  # CutMix has an extra seed (3) that the baseline lacks: it is not paired.
  records += [_record("cutmix", s, base[s] + gain[s], 0.3, 1.0, 0.9)
              for s in base]
  records.append(_record("cutmix", 3, 0.2, 0.1, 1.0, 0.9))
  records.append(_record("mixup", 0, 0.69, 0.2, 1.2, 1.0))
  for r in records:
    with open(tmp_path / "runs" / f"{r['method']}-s{r['seed']}.json", "w") as f:
      json.dump(r, f)
  result = report.summarize(str(tmp_path))
  primary = result["paired_vs_baseline"]["cutmix"]
  assert primary["seeds"] == [0, 1, 2]
  clean = primary["accuracy"]["clean"]
  diffs = [100 * gain[s] for s in base]
  ref = scipy.stats.ttest_rel([100 * (base[s] + gain[s]) for s in base],
                              [100 * base[s] for s in base])
  np.testing.assert_allclose(clean["values"], diffs, atol=1e-9)
  np.testing.assert_allclose(clean["p"], ref.pvalue, rtol=1e-6)
  assert "p_holm" not in clean  # the primary test is not in Holm's family
  assert "p_holm" in primary["accuracy"]["centre25"]
  # One MixUp seed: a difference, but no SE or test.
  mixup = result["paired_vs_baseline"]["mixup"]["accuracy"]["clean"]
  assert mixup["n"] == 1 and mixup["p"] is None
  # Kept fraction: occluded / clean per run, then averaged.
  kept = result["methods"]["none"]["kept"]["random50"]
  np.testing.assert_allclose(kept["values"], [0.2 / base[s] for s in base])
  gate = result["gate"]
  np.testing.assert_allclose(gate["test_over_train_loss"], 1.1 / 0.3)
  assert gate["passed"]
  text = (tmp_path / "results.md").read_text()
  assert "Primary test (CutMix − baseline, clean accuracy)" in text
  assert f"p = {report._p(ref.pvalue)}" in text
  assert "ratio 3.67, passed" in text
  assert os.path.getsize(tmp_path / "results.png") > 0


@pytest.mark.parametrize("df", [1, 5, 15, 30])
@pytest.mark.parametrize("q", [0.025, 0.9, 0.95, 0.975])
def test_t_ppf_matches_scipy(q, df):
  np.testing.assert_allclose(stats.t_ppf(q, df), scipy.stats.t.ppf(q, df),
                             rtol=1e-9)


@pytest.mark.parametrize("shift", [-0.6, -0.3, 0.0, 0.2, 0.45, 0.9])
def test_tost_is_the_larger_one_sided_p_and_the_90_percent_ci(shift):
  rng = np.random.default_rng(7)
  d = rng.normal(shift, 0.5, 16)
  got = stats.tost(d, 0.5)
  lower = scipy.stats.ttest_1samp(d + 0.5, 0, alternative="greater").pvalue
  upper = scipy.stats.ttest_1samp(d - 0.5, 0, alternative="less").pvalue
  np.testing.assert_allclose(got["p"], max(lower, upper), rtol=1e-9)
  ci = scipy.stats.t.interval(0.9, 15, loc=d.mean(), scale=scipy.stats.sem(d))
  np.testing.assert_allclose(got["ci"], ci, rtol=1e-9)
  # Equivalence at 0.05 is the 90% interval inside the margin.
  assert (got["p"] < 0.05) == (-0.5 < ci[0] and ci[1] < 0.5)


def test_power_matches_the_noncentral_t():
  # The figures the confirmatory protocol quotes: 16 pairs at SD 0.51.
  for effect, n in ((0.5, 16), (0.38, 16), (0.5, 6)):
    nc, df = effect / (0.51 / np.sqrt(n)), n - 1
    crit = scipy.stats.t.ppf(0.975, df)
    exact = scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df,
                                                                    nc)
    assert abs(stats.power_paired(effect, 0.51, n) - exact) < 0.005
  assert stats.power_paired(0.5, 0.51, 16) == stats.power_paired(0.5, 0.51, 16)


def _pool_record(method, seed, pool, clean):
  acc = dict(pool=pool, clean=clean, **{c: clean / 2 for c in
                                       evaluation.CONDITIONS[1:]})
  return dict(method=method, seed=seed, accuracy=acc,
              pool=dict(n=55_000, files_sha256="abc"))


@pytest.mark.parametrize("gains,reading", [
    ([0.2, 0.3, 0.25, 0.3, 0.2, 0.25], "a gain, smaller than 0.5 points"),
    ([0.9, 1.1, 1.0, 1.2, 0.8, 1.0],
     "a gain, not shown to be smaller than 0.5 points"),
    ([0.05, -0.05, 0.1, -0.1, 0.0, 0.02],
     "no difference of 0.5 points or more"),
    ([1.5, -1.2, 0.9, -0.8, 1.1, -1.0], "inconclusive"),
])
def test_confirmatory_design_reads_the_two_tests_as_registered(gains, reading):
  records = []
  for seed, g in enumerate(gains):
    records.append(_pool_record("none", seed, 0.70 + seed / 1000, 0.69))
    records.append(_pool_record("cutmix", seed, 0.70 + seed / 1000 + g / 100,
                                0.69 + g / 200))
  design = summary.design_of(records)
  assert design is summary.CONFIRMATORY
  paired = summary.paired_vs_baseline(records, ["none", "cutmix"],
                                           design)
  primary = paired["cutmix"]["accuracy"]["pool"]
  np.testing.assert_allclose(primary["values"], gains, atol=1e-9)
  assert "p_holm" not in primary
  # The Holm family: the 10k test, four occlusions and four kept fractions.
  holm = [c for c, d in paired["cutmix"]["accuracy"].items() if "p_holm" in d]
  holm += [c for c, d in paired["cutmix"]["kept"].items() if "p_holm" in d]
  assert len(holm) == 9
  lines = report._equivalence_lines(primary, 0.5)
  assert any(line.startswith("Registered reading") and reading in line
             for line in lines), lines


def test_first_studys_records_keep_the_first_design():
  records = [dict(method="none", seed=0, accuracy={"clean": 0.7})]
  assert summary.design_of(records) is summary.REGISTERED
