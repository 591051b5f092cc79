"""Padded batches: run a vmapped kernel over any number of objects with a few fixed shapes.

A kernel compiles once per input shape, so objects are fed in batches whose length is a power
of two between ``smallest`` and ``largest``: a new seed, hence a new number of satellites,
reuses the shapes already compiled. ``batch_sizes`` cuts n objects into full ``largest``
batches and the rest into its binary digits (down to ``smallest``, the last one padded), so
at most ``smallest - 1`` padded rows are computed for nothing (rounding the rest up to one
power of two wasted up to half of it).
"""

from __future__ import annotations

import numpy as np


def bucket_size(n: int, smallest: int, largest: int) -> int:
    """The padded batch length for ``n`` objects: a power of two in [smallest, largest]."""
    size = smallest
    while size < n and size < largest:
        size *= 2
    return min(size, largest)


def batch_sizes(n: int, smallest: int, largest: int) -> list[tuple[int, int]]:
    """(objects, padded length) of each batch for ``n`` objects: as many of the largest
    shape as fit, then each smaller shape (``bucket_size``'s) that fits, largest first; what
    is left, fewer than ``smallest``, padded to ``smallest``."""
    shapes = [largest]
    while shapes[-1] > smallest:
        shapes.append(max(bucket_size(shapes[-1] // 2, smallest, largest), smallest))
        if shapes[-1] == shapes[-2]:
            shapes.pop()
            break
    out, rest = [], n
    for size in shapes:
        while rest >= size:
            out.append((size, size))
            rest -= size
    if rest:
        out.append((rest, bucket_size(rest, smallest, largest)))
    return out


def padded_map(fn, arrays: dict, smallest: int, largest: int) -> dict:
    """Apply ``fn`` to ``arrays`` (leading axis n) in padded batches of a few fixed shapes
    (``batch_sizes``).

    Padding repeats the first row so the kernels see valid inputs; outputs are trimmed.
    Returns NumPy arrays concatenated along the leading axis.
    """
    n = len(next(iter(arrays.values())))
    outputs = []
    start = 0
    for count, size in batch_sizes(n, smallest, largest):
        stop = start + count
        batch = {}
        for name, arr in arrays.items():
            part = arr[start:stop]
            if size > len(part):
                pad = np.repeat(part[:1], size - len(part), axis=0)
                part = np.concatenate([part, pad])
            batch[name] = part
        result = fn(**batch)
        outputs.append({k: np.asarray(v)[: stop - start] for k, v in result.items()})
        start = stop
    if not outputs:
        return {}
    if len(outputs) == 1:
        return outputs[0]
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
