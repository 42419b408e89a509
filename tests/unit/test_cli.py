"""The command line: render and convert, and one clear line with exit status 2 on bad input."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune_operator.api.crd import crd_yaml
from finetune_operator.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_render_prints_the_manifests() -> None:
    result = _cli("render", "-f", str(ROOT / "examples" / "basic.yaml"), "-n", "team-a")
    assert result.returncode == 0, result.stderr
    kinds = [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in yaml.safe_load_all(result.stdout)]
    assert kinds == [("Job", "finetune-llama-job", "team-a"), ("ConfigMap", "finetune-llama-job-config", "team-a")]


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_convert_moves_the_job_block_and_keeps_the_rest() -> None:
    result = _cli("convert", str(ROOT / "examples" / "chart-values" / "basic-values.yaml"), "-n", "ml")
    assert result.returncode == 0, result.stderr
    ftj = yaml.safe_load(result.stdout)
    assert ftj["metadata"] == {"name": "finetune-llama-job", "namespace": "ml"}
    assert ftj["spec"]["backoffLimit"] == 1
    assert ftj["spec"]["ttlSecondsAfterFinished"] == 60
    assert "job" not in ftj["spec"]
    assert ftj["spec"]["expConfig"]["runSettings"]["maxIter"] == 100
    # The output renders as it stands.
    rendered = _cli("render", "-f", "-", stdin=result.stdout)
    assert rendered.returncode == 0, rendered.stderr


def test_convert_name_option_wins_and_loose_scalars_are_normalized() -> None:
    values = (
        "expConfig:\n  processSettings:\n    specifyGpus: 0\nresources:\n  requests: {cpu: 0.5}\n  limits: {cpu: 1}\n"
    )
    result = _cli("convert", "-", "--name", "run-1", stdin=values)
    assert result.returncode == 0, result.stderr
    ftj = yaml.safe_load(result.stdout)
    assert ftj["metadata"]["name"] == "run-1"
    assert ftj["spec"]["expConfig"]["processSettings"]["specifyGpus"] == "0"
    assert ftj["spec"]["resources"]["requests"]["cpu"] == "0.5"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ("convert", "-", "--name", "x"),
            "jobs: {}\n",
            "error: -: jobs: not a value of the aidaptivcache-finetune chart",
        ),
        (
            ("convert", "-", "--name", "x"),
            "job:\n  nmae: y\n",
            "error: -: job.nmae: not a value of the chart's job block",
        ),
        (("convert", "-"), "image: {}\n", "error: -: no name: pass --name, or set job.name in the values"),
        (
            ("convert", "-", "--name", "x"),
            "expConfig:\n  processSettings:\n    numGpus: 3\n",
            "error: -: spec.expConfig.processSettings.numGpus: Input should be 1, 2, 4 or 8",
        ),
        (
            ("convert", "-", "--name", "x"),
            "expConfig:\n  runSettings:\n    perUpdateTotalBatchSize: 10\n",
            "error: -: spec.expConfig: perUpdateTotalBatchSize must be a multiple of numGpus × "
            "perDeviceTrainBatchSize (the quotient is the number of gradient-accumulation steps): "
            "10 is not a multiple of 1 × 4 = 4",
        ),
        (
            ("convert", "-", "--name", "x"),
            "expConfig: x\n",
            "error: -: spec.expConfig: Input should be a valid dictionary or instance of ExpConfig",
        ),
        (
            ("convert", "-", "--name", "x"),
            "resources: {requests: [1]}\n",
            "error: -: spec.resources.requests: Input should be a valid dictionary",
        ),
        (
            ("convert", "-", "--name", "x"),
            "outputImage: {enabled: true, type: [crane], repository: r.example.com/a}\n",
            "error: -: outputImage.type: must be crane or kitops (got \"['crane']\")",
        ),
        (
            ("convert", "-", "--name", "x"),
            "outputImage: {enabled: true, type: {crane: 1}, repository: r.example.com/a}\n",
            "error: -: outputImage.type: must be crane or kitops (got \"{'crane': 1}\")",
        ),
        (
            ("convert", "-", "--name", "x"),
            "prescript: echo \x01\n",
            "error: -: not valid YAML: the control character U+0001 at line 1, column 17 cannot be in YAML text "
            "(write it escaped inside double quotes, as \\x01)",
        ),
        (
            ("render", "-f", "-"),
            "apiVersion: finetune.aidaptiv.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"
            'spec: {prescript: "a\x1bb"}\n',
            "error: -: not valid YAML: the control character U+001B at line 4, column 21 cannot be in YAML text "
            "(write it escaped inside double quotes, as \\x1B)",
        ),
        (
            ("render", "-f", "-"),
            "apiVersion: finetune.aidaptiv.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"
            'spec: {trainDataConfig: "ds: {data_path: \\x01}"}\n',
            "error: -: spec.trainDataConfig: trainDataConfig is not valid YAML: the control character U+0001 at "
            "line 1, column 17 cannot be in YAML text (write it escaped inside double quotes, as \\x01)",
        ),
        (("render", "-f", "-"), "kind: Pod\n", "error: -: expected kind FineTuneJob, got 'Pod'"),
        (("render", "-f", "-"), "a: [\n", "error: -: not valid YAML: expected the node content"),
        (
            ("render", "-f", "/nonexistent.yaml"),
            None,
            "error: /nonexistent.yaml: cannot read: No such file or directory",
        ),
        (
            ("render", "-f", "-"),
            "apiVersion: finetune.aidaptiv.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"
            "spec:\n  expConfig:\n    runSettings: {maxIter: '5'}\n",
            "error: -: spec.expConfig.runSettings.maxIter: Input should be a valid integer",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], stdin: str | None, message: str) -> None:
    result = _cli(*args, stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


HEAD = "apiVersion: finetune.aidaptiv.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Values PyYAML's loader rejects only while building them (found by a probe: each was a traceback).
        (
            HEAD + "spec:\n  image: {tag: 2024-13-01}\n",
            None,
        ),  # a timestamp-looking tag is a string, as kubectl reads it
        (HEAD + "spec: {backoffLimit: !!int abc}\n", "not valid YAML: 'abc' is not a valid int (line 4)"),
        (HEAD + "spec: {prescript: !!float x}\n", "not valid YAML: 'x' is not a valid float (line 4)"),
        (HEAD + "spec: {prescript: !!timestamp x}\n", "not valid YAML: 'x' is not a valid timestamp (line 4)"),
        (HEAD + "spec: {suspend: !!bool maybe}\n", "not valid YAML: 'maybe' is not a valid bool (line 4)"),
        (HEAD + "spec: {backoffLimit: " + "9" * 5000 + "}\n", "not valid YAML: '9999999999"),
        (HEAD + "spec: {backoffLimit: " + "9" * 30 + "}\n", "spec.backoffLimit: integers must fit in 64 bits"),
        (HEAD + "spec: {affinity: " + "[" * 2000 + "]" * 2000 + "}\n", "not valid YAML: nested more than 64 levels"),
        ("kind: " + "K" * 5000 + "\n", "expected kind FineTuneJob, got 'KKKKKKKKKK"),
        (HEAD + "sepc: {}\n", "spec: Field required; sepc: unknown field (check its spelling and place)"),
        ("kind: FineTuneJob\nmetadata: {name: x}\nspec: {}\n", "apiVersion: Field required"),
        (HEAD + "spec: {prescript: a, prescript: b}\n", "not valid YAML: the key 'prescript' appears twice (line 4)"),
        (HEAD + "spec: {affinity: {w: .nan}}\n", "not valid YAML: nan is not a number JSON can carry"),
        (HEAD + "spec:\n  affinity: &a [*a]\n", "not valid YAML: an alias refers to a node that contains it"),
        (
            HEAD + "spec:\n  expConfig: {processSettings: {num_gpus: 8}}\n",
            "spec.expConfig.processSettings.num_gpus: unknown",
        ),
        (HEAD + "spec:\n  expConfig: {processSettings: {numGpus: true}}\n", "spec.expConfig.processSettings.numGpus: "),
    ],
)
def test_hostile_yaml_is_one_line_and_exit_2(
    text: str, message: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8"))
    status = main(["render", "-f", "-"])
    out, err = capsys.readouterr()
    if message is None:
        assert status == 0, err
        return
    assert (status, out) == (2, "")
    assert err.startswith(f"error: -: {message}"), err
    assert err.count("\n") == 1
    assert len(err) < 1000


def test_usage_errors_exit_2() -> None:
    result = _cli("render")
    assert result.returncode == 2
    assert "-f/--filename" in result.stderr


def test_the_stall_is_a_whole_number_of_log_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["run"]).stall_intervals == 60
    assert build_parser().parse_args(["run", "--stall-intervals", "4"]).stall_intervals == 4
    for bad, said in (("0", "must be 1 or more: 0"), ("2.5", "not a whole number: '2.5'")):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(["run", "--stall-intervals", bad])
        assert stopped.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(f"argument --stall-intervals: {said}")
