"""Unit conversions and the periodic wrap of ``covmocks.core.units``."""

import numpy as np

from covmocks.core import units


def test_wrapped_positions_stay_in_the_box_once_stored_as_float32():
    """Half a float32 step below L rounds up to L when the catalog stores ``pos`` (float32):
    such a position goes to 0, its periodic image; positions that round below L keep every
    bit; -tiny and L itself wrap as before."""
    box = 339.68
    step = np.spacing(np.float32(box))  # 3.05e-5 Mpc/h
    pos = np.array([box - step / 4, box - 2 * step, -1e-300, box, 12.5, -0.5, box + 1.0])
    wrapped = units.wrap_periodic(pos, box)
    stored = wrapped.astype(np.float32)
    assert np.all((stored >= 0) & (stored < box))
    assert wrapped[0] == 0.0  # would have been stored as L
    np.testing.assert_array_equal(wrapped[1:], [box - 2 * step, 0.0, 0.0, 12.5, box - 0.5, 1.0])
