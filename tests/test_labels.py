"""Labels (`labels.py`): one-hot, smoothing and mixing with a draw."""

import jax
import jax.numpy as jnp
import numpy as np

import cutmix_jax as cj

KEY = jax.random.key(0)
Y = np.arange(6) % 4


def test_label_helpers():
  np.testing.assert_allclose(
      cj.one_hot(jnp.array([1]), 4, label_smoothing=0.2),
      [[0.05, 0.85, 0.05, 0.05]], rtol=1e-6)
  # Out-of-range ids are loud (NaN), not a silent row of zeros.
  assert np.isnan(np.asarray(cj.one_hot(jnp.array([4, -1]), 4))).all()
  multi_hot = jnp.array([[1.0, 1.0, 0.0]])
  np.testing.assert_allclose(cj.smooth_labels(multi_hot, 0.3),
                             [[0.8, 0.8, 0.1]], rtol=1e-6)


def test_soft_and_multi_hot_labels_mix_linearly():
  targets = jnp.array([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0],
                       [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25]])
  params = cj.sample_cutmix(KEY, 4, 8, 10, mode="elem")
  mixed = cj.mix_labels(params, targets, label_smoothing=0.1)
  smoothed = np.asarray(targets) * 0.9 + 0.1 / 4
  lam = np.asarray(params.lam)[:, None]
  np.testing.assert_allclose(mixed, lam * smoothed + (1 - lam) * smoothed[::-1],
                             rtol=1e-6, atol=1e-7)


def test_two_term_loss_equals_the_mixed_target_loss():
  """λ and partner give the official loss without [batch, classes] targets."""
  key = jax.random.key(4)
  params = cj.sample_cutmix(key, 6, 10, 12, mode="elem")
  logits = jax.random.normal(jax.random.key(1), (6, 4))
  log_p = jax.nn.log_softmax(logits)
  ce = lambda y: -jnp.take_along_axis(log_p, y[:, None], 1)[:, 0]
  two_term = params.lam * ce(jnp.asarray(Y)) + (1 - params.lam) * ce(
      jnp.asarray(Y)[params.partner])
  targets = cj.mix_labels(params, Y, num_classes=4)
  np.testing.assert_allclose(two_term, -(targets * log_p).sum(-1), rtol=1e-5)
