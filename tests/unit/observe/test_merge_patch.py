"""The status patch: an RFC 7386 merge patch that turns the stored status into the wanted one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_operator.observe.merge_patch import merge_patch
from tests.unit.controller.fakes import _merged


@pytest.mark.parametrize(
    ("before", "after", "patch"),
    [
        ({}, {"phase": "Pending"}, {"phase": "Pending"}),
        ({"phase": "Pending"}, {"phase": "Pending"}, {}),
        (
            {"cleanupAfter": "t", "phase": "Succeeded"},
            {"phase": "Succeeded", "cleanupTime": "t"},
            {"cleanupAfter": None, "cleanupTime": "t"},
        ),
        ({"trainerStatus": {"a": 1, "b": 2}}, {"trainerStatus": {"a": 1}}, {"trainerStatus": {"b": None}}),
        (
            {"conditions": [{"type": "A"}, {"type": "B"}]},
            {"conditions": [{"type": "A"}]},
            {"conditions": [{"type": "A"}]},
        ),
        ({"x": {"y": 1}}, {"x": 2}, {"x": 2}),
    ],
)
def test_merge_patch(before: dict[str, Any], after: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(before, after) == patch
    assert _merged(before, patch) == after


json_values = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.text(max_size=3)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.text(max_size=2), json_values, max_size=4)


@settings(max_examples=300, deadline=None, database=None)
@given(before=documents, after=documents)
def test_applying_the_patch_gives_the_wanted_document(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert _merged(before, merge_patch(before, after)) == after
