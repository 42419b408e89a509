"""The compatibility chart deploy/helm/aidaptivcache-finetune: a values.yaml of the original chart in, one FineTuneJob
out, the very one `finetune-operator convert VALUES --name NAME -n NAMESPACE` writes.

helm is the one `e2e/cluster build` builds (v3.22, e2e/toolchain/helm); without it these tests skip, or fail
under CI=true. Both outputs are parsed the way the API server reads them: YAML with the float forms of Go's
YAML (`7e-06`, `1e-08`, which Helm's toYaml writes and PyYAML alone would read as strings).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_operator.api.base import API_VERSION, KIND
from finetune_operator.api.convert import JOB_KEYS, MANUAL_MULTI_NODE, NO_BASE_IMAGE, OCI_KEYS, SPEC_KEYS
from tests.toolchain import tool

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "aidaptivcache-finetune"
EXAMPLES = sorted((ROOT / "examples" / "chart-values").glob("*.yaml"))
CHART_README = ROOT.parent / "shared" / "original-chart" / "README.md"
RELEASE = "ft1"
NAMESPACE = "ml-team"

needs_readme = pytest.mark.skipif(not CHART_README.exists(), reason="../shared/original-chart/README.md is not here")


class GoYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the floats without a dot that Go's YAML (the API server's) reads: 7e-06."""


GoYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _documents(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=GoYamlLoader) if doc is not None]


@pytest.fixture(scope="module")
def helm() -> str:
    return tool("helm")


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def _template(helm: str, values: Path, *extra: str, release: str = RELEASE) -> subprocess.CompletedProcess[str]:
    return _run([helm, "template", release, str(CHART), "-f", str(values), "-n", NAMESPACE, *extra])


def _convert(values: Path, name: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "finetune_operator.cli", "convert", str(values), "--name", name, "-n", NAMESPACE]
    return _run(argv)


def _chart_name(values: Any, release: str = RELEASE) -> str:
    """What the chart names the FineTuneJob: job.name, else the release name."""
    job = (values or {}).get("job") or {}
    return str(job.get("name") or release)


def _assert_chart_equals_convert(helm: str, values_file: Path) -> dict[str, Any]:
    values = yaml.safe_load(values_file.read_text())
    converted = _convert(values_file, _chart_name(values))
    assert converted.returncode == 0, converted.stderr
    rendered = _template(helm, values_file)
    assert rendered.returncode == 0, rendered.stderr
    (expected,) = _documents(converted.stdout)
    documents = _documents(rendered.stdout)
    assert len(documents) == 1, rendered.stdout
    assert documents[0] == expected
    return documents[0]


def _write(tmp_path: Path, values: Any, name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(values if isinstance(values, str) else yaml.safe_dump(values, sort_keys=False))
    return path


def _readme_values_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", CHART_README.read_text(), re.S)


def test_the_loader_reads_go_floats_as_floats_and_quoted_text_as_text() -> None:
    (doc,) = _documents("a: 7e-06\nb: 1e+06\nc: '7e-06'\nd: 7.0e-06\ne: 12\n")
    assert doc == {"a": 7e-06, "b": 1e06, "c": "7e-06", "d": 7e-06, "e": 12}
    assert isinstance(doc["b"], float) and isinstance(doc["e"], int)


# --- the chart as a package ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(helm: str, strict: bool) -> None:
    result = _run([helm, "lint", str(CHART), *(["--strict"] if strict else [])])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert not re.search(r"\[(WARNING|ERROR)\]", result.stdout), result.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "aidaptivcache-finetune"
    assert chart["version"] == "0.2.0"
    assert chart["appVersion"] == project["version"]


def test_values_yaml_sets_nothing() -> None:
    """Defaults here would be merged into every FineTuneJob, which then would differ from convert's."""
    assert yaml.safe_load((CHART / "values.yaml").read_text()) in (None, {})


def test_schema_knows_exactly_the_keys_convert_knows() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {*SPEC_KEYS, *OCI_KEYS, "job"}
    job = schema["properties"]["job"]
    assert job["additionalProperties"] is False
    assert set(job["properties"]) == {*JOB_KEYS, "name"}


# --- the chart renders what convert writes ------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_values_render_what_convert_writes(helm: str, path: Path) -> None:
    ftj = _assert_chart_equals_convert(helm, path)
    assert (ftj["apiVersion"], ftj["kind"]) == (API_VERSION, KIND)
    assert ftj["metadata"]["namespace"] == NAMESPACE


@needs_readme
def test_every_values_block_of_the_chart_readme_renders_what_convert_writes(helm: str, tmp_path: Path) -> None:
    blocks = _readme_values_blocks()
    assert len(blocks) >= 10, "the README's values blocks were not found"
    for index, block in enumerate(blocks):
        _assert_chart_equals_convert(helm, _write(tmp_path, block, f"block-{index:02d}.yaml"))


@needs_readme
def test_readme_basic_example_is_the_repo_copy_in_substance(helm: str, tmp_path: Path) -> None:
    """The e2e test installs examples/chart-values/basic-values.yaml as the README's Basic example."""
    section = CHART_README.read_text().split("### Basic Fine-tuning Job", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    readme = _assert_chart_equals_convert(helm, _write(tmp_path, block.group(1)))
    repo = _assert_chart_equals_convert(helm, ROOT / "examples" / "chart-values" / "basic-values.yaml")
    # The copy shortens the NFS retry loop of the prescript; everything else is the same.
    readme["spec"].pop("prescript")
    repo["spec"].pop("prescript")
    assert readme == repo


EVERY_KEY: dict[str, Any] = {
    "image": {"repository": "registry.example/aidaptiv", "tag": "v1", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "schedulerName": "",
    "securityContext": {"privileged": True},
    "prescript": "echo before\n",
    "postscript": "echo after\n",
    "expConfig": {"processSettings": {"numGpus": 2, "specifyGpus": "0,1"}, "runSettings": {"maxIter": 5}},
    "envConfig": {"pathSettings": {"logName": "train.log"}},
    "trainDataConfig": 'qa:\n  data_path: "HuggingFaceH4/instruction-dataset"\n  strategy: QA\n',
    "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
    "nodeSelector": {"phison.com/ai100-present": "true"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {}},
    "job": {"name": "every-key", "backoffLimit": 0, "restartPolicy": "OnFailure", "ttlSecondsAfterFinished": 5},
}

CASES: dict[str, Any] = {
    "every key": EVERY_KEY,
    "empty file": "",
    "empty mapping": {},
    "job null": {"job": None},
    "job without name": {"job": {"backoffLimit": 3}},
    "ttl null keeps the children": {"job": {"name": "keep", "ttlSecondsAfterFinished": None}},
    "nulls stay": {"expConfig": {"processSettings": {"specifyGpus": None}, "runSettings": {"weightFileFormat": None}}},
    "specifyGpus as an int": {"expConfig": {"processSettings": {"numGpus": 1, "specifyGpus": 0}}},
    "specifyGpus as a string": {"expConfig": {"processSettings": {"numGpus": 2, "specifyGpus": "2,3"}}},
    "fractional quantities": {
        "resources": {
            "requests": {"cpu": 0.1234567, "memory": "1Gi", "ephemeral-storage": 2500000000.5, "phison.com/ai100": 1},
            "limits": {"cpu": 1.5, "memory": "1Gi", "phison.com/ai100": 1},
        }
    },
    "small floats": {
        "expConfig": {
            "runSettings": {
                "lrScheduler": {"learningRate": 0.00002},
                "optimizer": {"eps": 0.00000001, "beta2": 0.999},
                "earlyStop": {"enable": True, "minDelta": 0.0001},
            }
        }
    },
    "lora target modules": {
        "expConfig": {"runSettings": {"lora": {"enableLora": True, "loraTargetModules": ["q_proj", "v_proj"]}}}
    },
    "0.3.x model image and loader": {
        "modelImage": {"enabled": True, "reference": "registry.example.com/m/llama:v1", "mountPath": "/data/model"},
        "initContainer": {
            "enabled": True,
            "image": {"repository": "busybox", "tag": "1.36"},
            "sharedDataPath": "/data",
        },
    },
    "0.3.x loader image alone, chart default path": {
        "initContainer": {
            "enabled": True,
            "image": {"repository": "registry.example.com/m/llama-loader"},
            "modelSourcePath": "/models/llama",
        },
    },
    "0.3.x crane push": {
        "outputImage": {
            "enabled": True,
            "type": "crane",
            "repository": "registry.example.com/team/out",
            "tag": "v1",
            "insecure": True,
            "pushSecret": "regcred",
            "crane": {"image": "mirror.local/crane:debug", "baseImage": "busybox:1.36"},
        },
    },
    "0.3.x crane push without a base": {
        "outputImage": {"enabled": True, "type": "crane", "repository": "registry.example.com/team/out"},
    },
    "0.3.x kitops push": {
        "outputImage": {
            "enabled": True,
            "type": "kitops",
            "repository": "registry.example.com/team/out",
            "kitops": {"binPath": "/bin/kit"},
        },
    },
    "0.3.x disabled blocks are ignored": {
        "modelImage": {"enabled": False, "reference": "not checked"},
        "initContainer": {"enabled": "true"},
        "outputImage": None,
    },
    "empty strings": {
        "schedulerName": "",
        "prescript": "",
        "envConfig": {"pathSettings": {"lora": {"loraWeight": ""}}},
    },
}


@pytest.mark.parametrize("values", CASES.values(), ids=list(CASES))
def test_values_render_what_convert_writes(helm: str, tmp_path: Path, values: Any) -> None:
    _assert_chart_equals_convert(helm, _write(tmp_path, values))


def test_name_is_job_name_else_the_release(helm: str, tmp_path: Path) -> None:
    named = _template(helm, _write(tmp_path, {"job": {"name": "from-values"}}), release="rel")
    unnamed = _template(helm, _write(tmp_path, {"job": {"backoffLimit": 2}}), release="rel")
    assert _documents(named.stdout)[0]["metadata"] == {"name": "from-values", "namespace": NAMESPACE}
    assert _documents(unnamed.stdout)[0]["metadata"] == {"name": "rel", "namespace": NAMESPACE}


def test_user_values_are_not_changed_for_other_templates(helm: str, tmp_path: Path) -> None:
    """specifyGpus and quantities are rewritten in a copy: a second render from the same values is the same."""
    values = _write(tmp_path, {"resources": {"requests": {"cpu": 0.5}}} | CASES["specifyGpus as an int"])
    first, second = _template(helm, values), _template(helm, values)
    assert first.stdout == second.stdout
    (ftj,) = _documents(first.stdout)
    assert ftj["spec"]["resources"]["requests"]["cpu"] == "0.5"
    assert ftj["spec"]["expConfig"]["processSettings"]["specifyGpus"] == "0"


def test_renders_exactly_one_finetunejob(helm: str) -> None:
    for path in EXAMPLES:
        result = _template(helm, path)
        assert result.returncode == 0, result.stderr
        documents = _documents(result.stdout)
        assert [(d["apiVersion"], d["kind"]) for d in documents] == [(API_VERSION, KIND)]
        assert set(documents[0]) == {"apiVersion", "kind", "metadata", "spec"}


# --- what the chart refuses -----------------------------------------------------------------------------------------

REFUSED: dict[str, tuple[Any, list[str]]] = {
    "unknown top-level keys": (
        {"job": {"name": "x"}, "volumes": [], "imagePullPolicy": "Always"},
        [
            "imagePullPolicy: not a value of the aidaptivcache-finetune chart (unknown key)",
            "volumes: not a value of the aidaptivcache-finetune chart (unknown key)",
        ],
    ),
    "unknown job key": (
        {"job": {"name": "x", "activeDeadlineSeconds": 5}},
        ["job.activeDeadlineSeconds: not a value of the chart's job block (unknown key)"],
    ),
}

# The 0.3.x blocks the schema lets through but neither the chart nor convert can map.
REFUSED_OCI: dict[str, tuple[Any, str]] = {
    "output type": (
        {"outputImage": {"enabled": True, "type": "oras", "repository": "r.io/a"}},
        "outputImage.type: must be crane or kitops (got 'oras')",
    ),
    "block not a mapping": ({"modelImage": "registry.example.com/m:v1"}, "modelImage: must be a mapping"),
}


@pytest.mark.parametrize(("values", "problem"), REFUSED_OCI.values(), ids=list(REFUSED_OCI))
def test_unmappable_oci_blocks_are_refused_by_both_in_the_same_words(
    helm: str, tmp_path: Path, values: dict[str, Any], problem: str
) -> None:
    values_file = _write(tmp_path, values)
    result = _template(helm, values_file)
    converted = _convert(values_file, "x")
    assert result.returncode != 0 and problem in result.stderr, result.stderr
    assert converted.returncode == 2 and problem in converted.stderr, converted.stderr


def test_a_crane_push_without_a_base_says_so_in_both(helm: str, tmp_path: Path) -> None:
    values_file = _write(tmp_path, CASES["0.3.x crane push without a base"])
    assert f"# {NO_BASE_IMAGE}" in _template(helm, values_file).stdout
    assert f"# {NO_BASE_IMAGE}" in _convert(values_file, "x").stdout


@pytest.mark.parametrize(("values", "problems"), REFUSED.values(), ids=list(REFUSED))
def test_unknown_keys_are_refused_by_the_schema(
    helm: str, tmp_path: Path, values: dict[str, Any], problems: list[str]
) -> None:
    result = _template(helm, _write(tmp_path, values))
    assert result.returncode != 0
    assert result.stdout == ""
    assert "values don't meet the specifications of the schema" in result.stderr
    for problem in problems:
        key = problem.split(":", 1)[0].rsplit(".", 1)[-1]
        assert f"'{key}'" in result.stderr, result.stderr
    assert "not allowed" in result.stderr


@pytest.mark.parametrize(("values", "problems"), REFUSED.values(), ids=list(REFUSED))
def test_unknown_keys_are_refused_like_convert_without_the_schema(
    helm: str, tmp_path: Path, values: dict[str, Any], problems: list[str]
) -> None:
    values_file = _write(tmp_path, values)
    result = _template(helm, values_file, "--skip-schema-validation")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].endswith(": " + "; ".join(problems)), result.stderr
    converted = _convert(values_file, "x")
    assert converted.returncode == 2
    assert converted.stderr.strip().endswith(f"{values_file}: " + "; ".join(problems)), converted.stderr


def test_job_that_is_not_a_mapping_is_refused_like_convert(helm: str, tmp_path: Path) -> None:
    values_file = _write(tmp_path, {"job": ["name", "x"]})
    result = _template(helm, values_file)
    converted = _convert(values_file, "x")
    problem = "job: must be a mapping (name, backoffLimit, restartPolicy, ttlSecondsAfterFinished)"
    assert result.returncode != 0 and problem in result.stderr, result.stderr
    assert converted.returncode == 2 and converted.stderr.strip().endswith(f"{values_file}: {problem}")


# --- user text is data --------------------------------------------------------------------------------------------

HOSTILE = (
    "  leading spaces, then \"double\" and 'single' quotes, a backslash \\ and a tab\there\n"
    '{{ .Release.Name }} {{- fail "injected" }} {{ include "x" . }} }}{{\n'
    "---\n"
    "apiVersion: v1\n"
    "kind: ConfigMap\n"
    "metadata: {name: injected}\n"
    "...\n"
    "- a: [1, 2]\n"
    "# not a comment: %s %d %v\n"
    "key: value   \n"
    "\n"
    "\n"
    "unicode: é 字 🚀, and trailing blank lines\n"
    "\n"
)


def test_hostile_text_comes_out_byte_identical(helm: str, tmp_path: Path) -> None:
    train_data = (
        "qa:\n"
        '  data_path: "HuggingFaceH4/instruction-dataset"\n'
        '  user_prompt: "{{ .Values }} {question} --- \\"quoted\\""\n'
        "---\n"
        "second:\n"
        "  data_path: local/{{ data }}\n"
    )
    values = {
        "job": {"name": "hostile"},
        "prescript": HOSTILE,
        "postscript": HOSTILE.strip() + "\r\nno newline at the end",
        "trainDataConfig": train_data,
        # nodeSelector values are label values (checked at apply); free-form affinity takes any text.
        "affinity": {"nodeAffinity": {"example.com/label": ["{{ .Release.Namespace }}"]}},
        "envConfig": {"pathSettings": {"logName": "'; rm -rf / #\"", "outputDir": "/---/{{ out }}"}},
        "securityContext": {"seLinuxOptions": {"type": "{{ template }}: [x]"}},
    }
    values_file = _write(tmp_path, values)
    ftj = _assert_chart_equals_convert(helm, values_file)
    spec = ftj["spec"]
    assert spec["prescript"] == HOSTILE
    assert spec["postscript"] == values["postscript"]
    assert spec["trainDataConfig"] == train_data
    assert spec["affinity"] == values["affinity"]
    assert spec["envConfig"] == values["envConfig"]
    assert spec["securityContext"] == values["securityContext"]
    # One object, nothing injected (tests/e2e/test_compat_chart.py reads the same text back from the API server).
    rendered = _template(helm, values_file).stdout
    assert [d["metadata"]["name"] for d in _documents(rendered)] == ["hostile"]


def test_manual_multi_node_mode_is_kept_and_said(helm: str, tmp_path: Path) -> None:
    """The chart's multiNodeSettings was a single pod with a hand-typed address: it stays that, and says so."""
    values = {
        "job": {"name": "manual"},
        "expConfig": {"processSettings": {"multiNodeSettings": {"enable": True, "masterAddr": "10.0.0.5"}}},
    }
    values_file = _write(tmp_path, values)
    ftj = _assert_chart_equals_convert(helm, values_file)
    assert "numNodes" not in ftj["spec"]
    assert ftj["spec"]["expConfig"]["processSettings"]["multiNodeSettings"] == {
        "enable": True,
        "masterAddr": "10.0.0.5",
    }
    note = "# " + MANUAL_MULTI_NODE
    assert note in _template(helm, values_file).stdout.splitlines()
    assert _convert(values_file, "manual").stdout.splitlines()[0] == note
    values["expConfig"]["processSettings"]["multiNodeSettings"]["enable"] = False
    assert note not in _convert(_write(tmp_path, values), "manual").stdout
