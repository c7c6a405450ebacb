import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbank.kernel.canonical import (
    MAX_SAFE_INT,
    CanonicalDomainError,
    canonical_bytes,
    check_domain,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
    | st.text()
)
bmp_keys = st.text(alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(bmp_keys, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1500)
@given(values)
def test_fast_encoder_is_byte_equal_to_rfc8785(value):
    check_domain(value)
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(
    st.dictionaries(
        st.text(
            alphabet=st.sampled_from("a\u00e9\u4e2d\ue000\uffef"), min_size=1, max_size=3
        ),
        st.integers(0, 9),
        min_size=2,
        max_size=8,
    )
)
def test_key_order_matches_utf16_order_for_bmp_keys(d):
    assert canonical_bytes(d) == rfc8785.dumps(d)


def test_astral_keys_are_refused_because_orders_differ():
    d = {"\ue000": 1, "\U0001f600": 2}
    assert canonical_bytes(d) != rfc8785.dumps(d)  # the reason for the rule
    with pytest.raises(CanonicalDomainError):
        check_domain(d)


@pytest.mark.parametrize(
    "bad, where",
    [
        (1.5, "$"),
        ({"a": [1, 2**53]}, "$.a[1]"),
        ({1: "x"}, "$"),
        ({"a": {"b": object()}}, "$.a.b"),
    ],
)
def test_values_outside_the_domain_are_refused_with_their_path(bad, where):
    with pytest.raises(CanonicalDomainError) as e:
        check_domain(bad)
    assert str(e.value).startswith(where)
