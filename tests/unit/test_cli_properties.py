"""The command line never answers with a traceback, over input hypothesis makes up (bounded by count).

Whatever the file holds (any bytes, any YAML, any value at any field of a FineTuneJob or of a chart's
values), `render`, `convert` and `parse-log` end with status 0, or with status 2 and one line on stderr.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_operator.api.convert import JOB_KEYS, OCI_KEYS, SPEC_KEYS
from finetune_operator.api.spec import FineTuneJobSpec
from finetune_operator.cli import main

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# Characters that trouble YAML readers and writers the most, among any others.
nasty = st.sampled_from(
    [*"\x00\x01\x1b\x7f\x85\x9f\ufeff\ufffe\u2028\t\r\n'\"\\$`:#-[]{}|>&*!%@,? ", "---", "...", "!!int", "&a", "*a"]
)
text = st.lists(st.one_of(st.text(max_size=6), nasty), max_size=12).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
# Any JSON-like value a YAML file can hold, a few levels deep.
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
SPEC_FIELDS = sorted(field.alias or name for name, field in FineTuneJobSpec.model_fields.items())


def _outcome(args: list[str], stdin: str) -> tuple[int, str, str]:
    """main()'s exit status, stdout and stderr; an exception escaping it fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
        patch.setattr("sys.stdout", out)
        patch.setattr("sys.stderr", err)
        status = main(args)
    return status, out.getvalue(), err.getvalue()


def _assert_clean(status: int, out: str, err: str) -> None:
    if status == 0:
        return
    assert status == 2, err
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err


def _dumped(document: Any) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:  # a value PyYAML cannot write: write its repr instead, still some YAML
        return repr(document)


@PROPERTY
@given(command=st.sampled_from(["render", "convert", "parse-log"]), stdin=text)
def test_any_text_is_a_result_or_one_line(command: str, stdin: str) -> None:
    args = {
        "render": ["render", "-f", "-"],
        "convert": ["convert", "-", "--name", "x"],
        "parse-log": ["parse-log", "-"],
    }
    _assert_clean(*_outcome(args[command], stdin))


@PROPERTY
@given(spec=st.dictionaries(st.sampled_from(SPEC_FIELDS), values, max_size=4), name=st.one_of(text, values))
def test_any_value_at_any_field_of_a_finetunejob_is_a_result_or_one_line(spec: dict[str, Any], name: Any) -> None:
    document = {
        "apiVersion": "finetune.aidaptiv.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": spec,
    }
    _assert_clean(*_outcome(["render", "-f", "-"], _dumped(document)))


value_keys = st.sampled_from([*SPEC_KEYS, *OCI_KEYS, "job"])
oci_block = st.fixed_dictionaries(
    {"enabled": st.one_of(st.just(True), values)},
    optional={key: values for key in ("type", "repository", "tag", "reference", "image", "crane", "kitops")},
)
job_block = st.dictionaries(st.sampled_from([*JOB_KEYS, "name"]), values, max_size=3)


@PROPERTY
@given(
    chart_values=st.dictionaries(value_keys, values, max_size=3),
    oci=st.dictionaries(st.sampled_from(OCI_KEYS), oci_block, max_size=3),
    job=st.one_of(job_block, values),
    named=st.booleans(),
)
def test_any_chart_values_are_a_finetunejob_or_one_line(
    chart_values: dict[str, Any], oci: dict[str, Any], job: Any, named: bool
) -> None:
    document = {**chart_values, **oci, "job": job}
    _assert_clean(*_outcome(["convert", "-", *(["--name", "x"] if named else [])], _dumped(document)))


@PROPERTY
@given(data=st.binary(max_size=64), command=st.sampled_from(["render", "convert", "parse-log"]))
def test_any_bytes_in_a_file_are_a_result_or_one_line(data: bytes, command: str) -> None:
    handle, path = tempfile.mkstemp(suffix=".yaml")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        args = {"render": ["render", "-f", path], "convert": ["convert", path, "--name", "x"]}
        _assert_clean(*_outcome(args.get(command, ["parse-log", path]), ""))
    finally:
        os.unlink(path)
