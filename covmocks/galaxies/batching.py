"""Padded batches: run a vmapped kernel over any number of objects with a few fixed shapes.

A kernel compiles once per input shape (seconds to tens of seconds each on a small CPU), so
objects are fed in batches of a few fixed lengths (``batch_lengths``): ``largest``, and
``smallest`` times a power of ``STEP`` below it (1,024, 8,192 and 65,536 by default: three
shapes per kernel whatever the number of objects). A new seed, hence a new number of
satellites, reuses the shapes already compiled. ``batch_sizes`` cuts n objects into as many
batches of each length as fit, largest first, and pads what is left (fewer than ``smallest``)
to ``smallest``: at most ``smallest - 1`` padded rows are computed for nothing, at the price
of up to ``STEP - 1`` calls per length (each a few milliseconds of dispatch at most).
Powers of two (``STEP`` 2) compiled up to seven shapes per kernel, one per binary digit.
"""

from __future__ import annotations

import numpy as np

# Ratio of successive batch lengths below ``largest``.
STEP = 8


def batch_lengths(smallest: int, largest: int) -> list[int]:
    """The padded lengths, largest first: ``largest``, then ``smallest * STEP**k`` below it."""
    below = []
    size = smallest
    while size < largest:
        below.append(size)
        size *= STEP
    return [largest, *below[::-1]]


def batch_sizes(n: int, smallest: int, largest: int) -> list[tuple[int, int]]:
    """(objects, padded length) of each batch for ``n`` objects: as many of each length
    (``batch_lengths``) as fit, largest first; what is left, fewer than ``smallest``, padded
    to ``smallest``."""
    out, rest = [], n
    for size in batch_lengths(smallest, largest):
        while rest >= size:
            out.append((size, size))
            rest -= size
    if rest:
        out.append((rest, smallest))
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
