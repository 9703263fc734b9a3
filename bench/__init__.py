"""cutmix-jax benchmark: every op against the memory-copy limit.

Run `python -m bench --help`. The table reports each op's time divided by the
time of a jitted batch copy (a reversal along the batch axis, written out) of
the same array, measured interleaved in the same process, plus a NumPy
reference of the paper's algorithm, peers when importable, the cost of
drawing the parameters and, when `train/` is importable, the overhead of each
augmentation inside one jitted train step.
"""
