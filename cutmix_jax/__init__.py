"""cutmix-jax: CutMix, MixUp, Cutout, ResizeMix and their switch for JAX.

Pure functions of an explicit PRNG key that run under `jax.jit`, `vmap`,
`shard_map`, `pmap` and `jit` over sharded arrays. Reference: Yun et al.,
"CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", ICCV 2019, arXiv:1905.04899.
"""

# Ordered as the modules build on each other: draw types, box arithmetic,
# pairing, samplers, appliers, labels (dense, k-way) and their losses,
# targets, the one-call ops, then the ViT token masks and the TransMix label
# rule.
from cutmix_jax._src.params import CuboidParams
from cutmix_jax._src.params import MaskParams
from cutmix_jax._src.params import MixParams
from cutmix_jax._src.params import Op
from cutmix_jax._src.boxes import box_area
from cutmix_jax._src.boxes import box_mask
from cutmix_jax._src.boxes import lam_from_box
from cutmix_jax._src.pairing import partner_rows
from cutmix_jax._src.sampling import sample_box
from cutmix_jax._src.sampling import sample_cutmix
from cutmix_jax._src.sampling import sample_cutout
from cutmix_jax._src.sampling import sample_lam
from cutmix_jax._src.sampling import sample_mix
from cutmix_jax._src.sampling import sample_mixup
from cutmix_jax._src.sampling import sample_resizemix
from cutmix_jax._src.sampling import sample_switch
from cutmix_jax._src.masks import sample_fmix
from cutmix_jax._src.masks import sample_multibox
from cutmix_jax._src.cuboid import sample_cutmix_cuboid
from cutmix_jax._src.apply import apply_params
from cutmix_jax._src.labels import mix_labels
from cutmix_jax._src.labels import one_hot
from cutmix_jax._src.labels import smooth_labels
from cutmix_jax._src.kway import KWayLabels
from cutmix_jax._src.kway import mix_labels_kway
from cutmix_jax._src.losses import sigmoid_binary_cross_entropy_kway
from cutmix_jax._src.losses import softmax_cross_entropy_kway
from cutmix_jax._src.targets import apply_tree
from cutmix_jax._src.targets import mix_boxes
from cutmix_jax._src.targets import MixedBoxes
from cutmix_jax._src.ops import cutmix
from cutmix_jax._src.ops import cutmix_pair
from cutmix_jax._src.ops import cutout
from cutmix_jax._src.ops import mix
from cutmix_jax._src.ops import mixup
from cutmix_jax._src.ops import resizemix
from cutmix_jax._src.ops import switch
from cutmix_jax._src.tokens import token_mask
from cutmix_jax._src.transmix import transmix_labels
from cutmix_jax._src.transmix import transmix_labels_kway
from cutmix_jax._src.transmix import transmix_lam

__version__ = "0.3.0.dev0"

__all__ = (
    "CuboidParams",
    "KWayLabels",
    "MaskParams",
    "MixParams",
    "MixedBoxes",
    "Op",
    "apply_params",
    "apply_tree",
    "box_area",
    "box_mask",
    "cutmix",
    "cutmix_pair",
    "cutout",
    "lam_from_box",
    "mix",
    "mix_boxes",
    "mix_labels",
    "mix_labels_kway",
    "mixup",
    "one_hot",
    "partner_rows",
    "resizemix",
    "sample_box",
    "sample_cutmix",
    "sample_cutmix_cuboid",
    "sample_cutout",
    "sample_fmix",
    "sample_lam",
    "sample_mix",
    "sample_mixup",
    "sample_multibox",
    "sample_resizemix",
    "sample_switch",
    "sigmoid_binary_cross_entropy_kway",
    "smooth_labels",
    "softmax_cross_entropy_kway",
    "switch",
    "token_mask",
    "transmix_labels",
    "transmix_labels_kway",
    "transmix_lam",
)
