"""labkit.rig._checks: one wording for a refused value, one test for "a number", across the rig."""

import numpy as np
import pytest

from labkit.rig._checks import as_integer, as_real, bad_value, check_value, is_integer, is_real


def test_numbers_but_not_bools():
    assert all(is_real(v) for v in (1, 2.5, np.float32(1), np.int64(3)))
    assert not any(is_real(v) for v in (True, "1", None, [1]))
    assert is_integer(np.int16(2)) and not is_integer(2.0) and not is_integer(False)
    assert as_real("x", np.int64(2)) == 2.0 and type(as_real("x", 2)) is float and as_integer("n", np.int8(3)) == 3
    with pytest.raises(TypeError, match="x must be a real number"):
        as_real("x", True)
    with pytest.raises(TypeError, match="n must be an integer, got float 3.0"):
        as_integer("n", 3.0)


def test_one_wording_for_a_refused_value():
    err = bad_value("deliver", "vpp", -1, "a number >= 0")
    assert isinstance(err, ValueError) and str(err) == "deliver: bad value for 'vpp': -1; allowed: a number >= 0"
    check_value("f", "x", True, 0, "anything")
    with pytest.raises(ValueError, match=r"^f: bad value for 'x': 0; allowed: > 0$"):
        check_value("f", "x", False, 0, "> 0")
