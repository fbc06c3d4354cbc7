"""The check of a record id and an account id before they reach the ledger
(service._identifier_problem) against the formula it replaced, written out: a generator
over the characters was 5 % of a 1,000-record credit's CPU, so the check is now done by
str.isprintable and a regular expression (docs/ledger.md, Session 19). The two must
refuse the same identifiers with the same reasons."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from webui.api import service


def _formula(value, field):
    text = str(value)
    if len(text) > service.MAX_IDENTIFIER:
        return field, f"`{field}` has {len(text)} characters: at most {service.MAX_IDENTIFIER}"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return field, f"`{field}` contains a control character (NUL, tab, newline ...)"
    if text != text.strip():
        return field, f"`{field}` begins or ends with white space"
    return None


def test_every_code_point_alone_and_inside_an_id_is_judged_as_before():
    """Every code point (surrogates too: a JSON body may hold a lone one), alone and in
    the middle of an id; the controls C0 and DEL are refused, C1 (not printable either,
    nor refused before) and the other non-printable characters are not."""
    refused = 0
    for point in range(sys.maxunicode + 1):
        c = chr(point)
        for text in (c, f"ride-{c}-1"):
            got = service._identifier_problem(text, "id")
            assert got == _formula(text, "id"), (hex(point), text)
            refused += got is not None
    assert refused > 2 * 33  # the 33 controls inside an id, and white space alone


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=210), st.integers(), st.text(alphabet="\x00\x1f\x7f\x80\x85 a\u2028\t", max_size=8)))
def test_random_ids_are_judged_as_before(value):
    assert service._identifier_problem(value, "account") == _formula(value, "account")
