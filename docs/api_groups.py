"""The API reference's table: every public name, its group and its twins.

The API pages under `docs/api/` are generated from this table when Sphinx
starts (see `write_api_pages`, called by `conf.py`); nothing under
`docs/api/` is written by hand. `tests/test_docs.py` checks that the groups
hold every name of `cutmix_jax.__all__` exactly once, so a public rename
fails that test until the rename is made here too.
"""

from __future__ import annotations

import enum
import inspect
import pathlib

# (title, one-line description, names). Order is the order on the page.
GROUPS: list[tuple[str, str, list[str]]] = [
    ("Ops",
     "Draw and apply in one call: `(key, images, labels)` in, "
     "`(images, targets)` out.",
     ["cutmix", "mixup", "mix", "cutout", "resizemix", "switch",
      "cutmix_pair"]),
    ("Samplers",
     "Draw only: the parameters of one augmentation (λ, boxes or masks, "
     "partners), to apply to any number of arrays.",
     ["sample_cutmix", "sample_mixup", "sample_mix", "sample_cutout",
      "sample_resizemix", "sample_switch", "sample_multibox", "sample_fmix",
      "sample_cutmix_cuboid", "sample_lam", "sample_box"]),
    ("Appliers",
     "Apply any draw (box, mask or cuboid) to a batch-major array.",
     ["apply_params", "partner_rows"]),
    ("Targets",
     "Apply a draw to what goes with the images: labels, pytrees of dense "
     "maps, detection boxes.",
     ["mix_labels", "mix_labels_kway", "apply_tree", "mix_boxes", "one_hot",
      "smooth_labels"]),
    ("Losses",
     "Losses of logits against k-way labels, exact and with no "
     "`[batch, num_classes]` target: `(logits, labels)` in, `[batch]` out.",
     ["softmax_cross_entropy_kway", "sigmoid_binary_cross_entropy_kway"]),
    ("Vision Transformers",
     "Draws at the resolution of a ViT's patch tokens, and TransMix's "
     "label weights from the class token's attention.",
     ["token_mask", "transmix_labels", "transmix_labels_kway",
      "transmix_lam"]),
    ("Blocks",
     "Box arithmetic the samplers are built from.",
     ["box_mask", "box_area", "lam_from_box"]),
    ("Types",
     "What the samplers return.",
     ["MixParams", "MaskParams", "CuboidParams", "MixedBoxes", "KWayLabels",
      "Op"]),
]

# Each page's "See also": its sampler or applier twin first.
SEE_ALSO: dict[str, list[str]] = {
    "cutmix": ["sample_cutmix", "apply_params", "mix_labels"],
    "mixup": ["sample_mixup", "apply_params", "mix_labels"],
    "mix": ["sample_mix", "apply_params", "mix_labels"],
    "cutout": ["sample_cutout", "apply_params"],
    "resizemix": ["sample_resizemix", "apply_params", "mix_labels"],
    "switch": ["sample_switch", "apply_params", "mix_labels"],
    "cutmix_pair": ["cutmix", "sample_lam", "sample_box"],
    "sample_cutmix": ["cutmix", "apply_params", "mix_labels", "MixParams"],
    "sample_mixup": ["mixup", "apply_params", "mix_labels", "MixParams"],
    "sample_mix": ["mix", "apply_params", "mix_labels", "MixParams"],
    "sample_cutout": ["cutout", "apply_params", "MixParams"],
    "sample_resizemix": ["resizemix", "apply_params", "mix_labels",
                         "MixParams"],
    "sample_switch": ["switch", "apply_params", "mix_labels", "MixParams"],
    "sample_multibox": ["apply_params", "mix_labels", "MaskParams",
                        "sample_fmix"],
    "sample_fmix": ["apply_params", "mix_labels", "MaskParams",
                    "sample_multibox"],
    "sample_cutmix_cuboid": ["apply_params", "CuboidParams", "mix_labels"],
    "sample_lam": ["sample_box", "cutmix_pair"],
    "sample_box": ["box_mask", "lam_from_box", "sample_lam"],
    "apply_params": ["sample_cutmix", "mix_labels", "apply_tree",
                     "partner_rows"],
    "partner_rows": ["apply_params", "MixParams"],
    "mix_labels": ["apply_params", "mix_labels_kway", "one_hot",
                   "smooth_labels"],
    "mix_labels_kway": ["mix_labels", "KWayLabels",
                        "softmax_cross_entropy_kway"],
    "softmax_cross_entropy_kway": ["KWayLabels", "mix_labels_kway",
                                   "sigmoid_binary_cross_entropy_kway"],
    "sigmoid_binary_cross_entropy_kway": ["KWayLabels", "mix_labels_kway",
                                          "softmax_cross_entropy_kway"],
    "KWayLabels": ["mix_labels_kway", "softmax_cross_entropy_kway",
                   "mix_labels"],
    "apply_tree": ["apply_params", "mix_boxes"],
    "mix_boxes": ["apply_tree", "MixedBoxes"],
    "one_hot": ["smooth_labels", "mix_labels"],
    "smooth_labels": ["one_hot", "mix_labels"],
    "box_mask": ["sample_box", "box_area"],
    "box_area": ["lam_from_box", "box_mask"],
    "lam_from_box": ["box_area", "sample_box"],
    "token_mask": ["transmix_lam", "MixParams", "MaskParams"],
    "transmix_labels": ["transmix_lam", "mix_labels", "token_mask"],
    "transmix_labels_kway": ["transmix_labels", "mix_labels_kway",
                             "softmax_cross_entropy_kway"],
    "transmix_lam": ["transmix_labels", "token_mask", "mix_labels"],
    "MixParams": ["sample_cutmix", "apply_params", "Op"],
    "MaskParams": ["sample_multibox", "sample_fmix", "apply_params"],
    "CuboidParams": ["sample_cutmix_cuboid", "apply_params"],
    "MixedBoxes": ["mix_boxes"],
    "Op": ["MixParams", "sample_switch"],
}

# Examples for the names whose docstrings have none (doctest format; run by
# tests/test_docs.py with `jax`, `jnp` and `cutmix_jax` imported).
EXAMPLES: dict[str, str] = {
    "partner_rows": """\
>>> params = cutmix_jax.sample_cutmix(jax.random.key(0), 4, 8, 8)
>>> cutmix_jax.partner_rows(params, jnp.arange(4))  # pairing='flip'
Array([3, 2, 1, 0], dtype=int32)
""",
    "box_area": """\
>>> cutmix_jax.box_area(jnp.array([2, 3, 6, 8]))  # (top, left, bottom, right)
Array(20, dtype=int32)
""",
    "lam_from_box": """\
>>> cutmix_jax.lam_from_box(jnp.array([0, 0, 4, 8]), 8, 8)  # half the pixels
Array(0.5, dtype=float32)
""",
    "MixParams": """\
>>> params = cutmix_jax.sample_cutmix(jax.random.key(0), 4, 32, 32, mode="elem")
>>> params.lam.shape, params.box.shape, params.partner.shape, params.op.shape
((4,), (4, 4), (4,), (4,))
>>> params.height, params.width, params.pairing
(32, 32, 'flip')
""",
    "MaskParams": """\
>>> masks = cutmix_jax.sample_fmix(jax.random.key(0), 4, 32, 32)
>>> masks.mask.shape, masks.lam.shape, masks.partner.shape
((4, 32, 32), (4,), (4,))
""",
    "CuboidParams": """\
>>> cuboid = cutmix_jax.sample_cutmix_cuboid(jax.random.key(0), 4, 8, 32, 32)
>>> cuboid.lam.shape, cuboid.box.shape, cuboid.time.shape
((4,), (4, 4), (4, 2))
""",
    "MixedBoxes": """\
>>> params = cutmix_jax.sample_cutmix(jax.random.key(0), 2, 32, 32)
>>> boxes = jnp.array([[[0., 0., 16., 16.]], [[8., 8., 32., 32.]]])
>>> out = cutmix_jax.mix_boxes(params, boxes, jnp.array([[1], [2]]),
...                            jnp.ones((2, 1), bool), max_boxes=2)
>>> out.boxes.shape, out.classes.shape, out.valid.shape, out.dropped.shape
((2, 2, 4), (2, 2), (2, 2), (2,))
""",
    "Op": """\
>>> [op.name for op in cutmix_jax.Op]
['NONE', 'MIXUP', 'CUTMIX', 'CUTOUT', 'RESIZEMIX']
""",
}


def names() -> list[str]:
  return [name for _, _, group in GROUPS for name in group]


def _underline(text: str, char: str) -> str:
  return f"{text}\n{char * len(text)}\n"


def page(name: str) -> str:
  """The reST source of one name's page."""
  import cutmix_jax  # pylint: disable=g-import-not-at-top

  obj = getattr(cutmix_jax, name)
  title = name.replace("_", r"\_")
  lines = [_underline(title, "="), ".. currentmodule:: cutmix_jax\n"]
  if inspect.isclass(obj) and issubclass(obj, enum.Enum):
    lines.append(f".. autoclass:: {name}\n   :members:\n   :undoc-members:\n")
  elif inspect.isclass(obj):
    # Fields are listed by the docstring's Attributes section; only methods
    # and properties with docstrings get entries of their own.
    lines.append(f".. autoclass:: {name}\n   :members:\n")
  else:
    lines.append(f".. autofunction:: {name}\n")
  if name in EXAMPLES:
    example = "\n".join("   " + line if line else ""
                        for line in EXAMPLES[name].splitlines())
    lines.append(_underline("Example", "-"))
    lines.append(".. code-block:: pycon\n\n" + example + "\n")
  twins = SEE_ALSO.get(name, [])
  if twins:
    refs = ", ".join(f":py:obj:`{twin}`" for twin in twins)
    lines.append(f".. seealso:: {refs}\n")
  return "\n".join(lines)


def index() -> str:
  """The reST source of the API index: one autosummary table per group."""
  lines = [
      _underline("API reference", "="),
      ".. currentmodule:: cutmix_jax\n",
      "Every name below is importable from ``cutmix_jax``. Every random "
      "function takes the key first, then its arrays; every option is "
      "keyword-only. Inputs may be any array-like; outputs are "
      "``jax.Array``.\n",
  ]
  for title, description, group in GROUPS:
    lines.append(_underline(title, "-"))
    lines.append(description.replace("`", "``") + "\n")
    lines.append(".. autosummary::\n   :nosignatures:\n")
    lines.extend(f"   {name}" for name in group)
    lines.append("")
    lines.append(".. toctree::\n   :hidden:\n")
    lines.extend(f"   {name}" for name in group)
    lines.append("")
  return "\n".join(lines)


def write_api_pages(directory: pathlib.Path) -> None:
  """Writes `index.rst` and one page per name; rewrites only what changed."""
  directory.mkdir(parents=True, exist_ok=True)
  wanted = {"index.rst": index()}
  wanted.update({f"{name}.rst": page(name) for name in names()})
  for stale in directory.glob("*.rst"):
    if stale.name not in wanted:
      stale.unlink()
  for filename, text in wanted.items():
    path = directory / filename
    if not path.exists() or path.read_text() != text:
      path.write_text(text)
