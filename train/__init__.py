"""A small ResNet trainer that uses cutmix_jax inside a data-parallel step.

Run `python -m train` (digits, ResNet-20, CutMix) or see `--help`.
"""
