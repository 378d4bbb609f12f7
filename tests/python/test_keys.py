import math

import coopcache
import pytest
from hypothesis import given
from hypothesis import strategies as st

kb = coopcache.key_bytes

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)
keys = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple)),
    max_leaves=12,
)


def as_python(k: object) -> object:
    """The key with lists as tuples (the key space does not tell them apart)."""
    if isinstance(k, (list, tuple)):
        return tuple(as_python(i) for i in k)
    return k


def test_equal_scalars_are_one_key() -> None:
    assert kb(1) == kb(1.0) == kb(True)
    assert kb(0) == kb(0.0) == kb(-0.0) == kb(False)
    assert kb(10**20) == kb(1e20)
    assert kb(2**63) == kb(float(2**63))
    assert kb(-(2**63)) == kb(float(-(2**63)))
    assert kb(float("nan")) == kb(-float("nan"))
    assert kb(("user", 42)) == kb(["user", 42])
    assert kb("1") != kb(1) and kb(b"1") != kb("1") and kb(None) != kb(0)
    assert kb(1.5) != kb(1)
    assert kb((1,)) != kb(1)
    assert kb(()) != kb(None)


def test_big_ints() -> None:
    assert kb(2**200) != kb(2**200 + 1)
    assert kb(-(2**200)) != kb(2**200)
    assert kb(2**64) == kb(float(2**64))
    assert kb(2**63 - 1) != kb(2**63)


@pytest.mark.parametrize("bad", [object(), {1: 2}, {1, 2}, 1j, bytearray(b"x"), [1, [object()]]])
def test_other_types_are_type_errors_naming_the_type_and_key(bad: object) -> None:
    with pytest.raises(TypeError, match="key=") as e:
        kb(bad)
    assert "got " in str(e.value)


def test_self_containing_list_is_an_error() -> None:
    a: list = []
    a.append(a)
    with pytest.raises(ValueError):
        kb(a)


@given(keys, keys)
def test_equal_keys_iff_equal_bytes(a: object, b: object) -> None:
    pa, pb = as_python(a), as_python(b)
    assert (pa == pb) == (kb(a) == kb(b)), (a, b)


@given(keys)
def test_key_is_deterministic_and_lists_equal_tuples(a: object) -> None:
    assert kb(a) == kb(as_python(a))


@given(st.integers())
def test_ints_and_integral_floats(i: int) -> None:
    f = float(i)
    if math.isfinite(f):
        assert (kb(i) == kb(f)) == (i == f)


@given(st.floats(allow_nan=False, allow_infinity=True))
def test_floats_equal_ints_when_integral(f: float) -> None:
    if math.isfinite(f) and f == int(f):
        assert kb(f) == kb(int(f))
    else:
        assert kb(f) != kb(0)
