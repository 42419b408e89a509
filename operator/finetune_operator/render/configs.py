"""The trainer's config files, written by a YAML serializer (the chart templated them as text).

PyYAML writes `"0"` as `'0'` (still a string), lists as YAML lists, and floats with a dot in the
mantissa (`7.0e-06`), which YAML 1.1 readers such as the trainer's PyYAML read back as floats; the
chart's `7e-06` reads back as a string there. No comments are written: the trainer counts
`data_path` even inside comments.
"""

from __future__ import annotations

import posixpath
from typing import Any

import yaml

from finetune_operator.api.base import RANK_PLACEHOLDER
from finetune_operator.api.resource import FineTuneJob
from finetune_operator.api.spec import FineTuneJobSpec
from finetune_operator.render import multinode
from finetune_operator.render.expansion import literal

EXP_CONFIG_DIR = "/config/exp"
ENV_CONFIG_DIR = "/config/env"
TRAIN_DATA_DIR = "/config/train_data"
SCRIPTS_DIR = "/config/scripts"
EXP_CONFIG_FILE = "exp_config.yaml"
ENV_CONFIG_FILE = "env_config.yaml"
TRAIN_DATA_FILE = "QA_dataset_config.yaml"
PRESCRIPT_FILE = "prescript.sh"
POSTSCRIPT_FILE = "postscript.sh"


# A YAML 1.1 reader (the trainer's PyYAML) breaks lines at these, and unescaped they would reach the
# trainer changed: NEL, the Unicode line and paragraph separators, and the other C1 controls.
LINE_BREAKS = frozenset("\x85\u2028\u2029") | frozenset(chr(c) for c in range(0x80, 0xA0))


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line text as literal blocks, so scripts stay readable, and text
    with odd line breaks double-quoted with escapes, so it reads back exactly."""

    def write_double_quoted(self, text: str, split: bool = True) -> None:
        # allow_unicode would write U+2028 and U+2029 raw even inside double quotes: escape them.
        escape = not LINE_BREAKS.isdisjoint(text)
        allow_unicode, self.allow_unicode = self.allow_unicode, self.allow_unicode and not escape
        try:
            super().write_double_quoted(text, split)
        finally:
            self.allow_unicode = allow_unicode


def _represent_str(dumper: yaml.SafeDumper | yaml.CSafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if not LINE_BREAKS.isdisjoint(text) else "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


class _FastDumper(yaml.CSafeDumper):
    """The same YAML from libyaml's emitter (in PyYAML's wheels), ten times faster: the three config
    files were most of the time from a FineTuneJob's creation to its Job. Text with odd line breaks
    keeps the Python writer, whose escapes (every non-ASCII character) libyaml does not make."""


_FastDumper.add_representer(str, _represent_str)


def _has_odd_breaks(data: Any) -> bool:
    if isinstance(data, str):
        return not LINE_BREAKS.isdisjoint(data)
    if isinstance(data, dict):
        return any(_has_odd_breaks(key) or _has_odd_breaks(value) for key, value in data.items())
    if isinstance(data, list | tuple):
        return any(_has_odd_breaks(item) for item in data)
    return False


def dump_yaml(data: Any) -> str:
    dumper = _Dumper if _has_odd_breaks(data) or not yaml.__with_libyaml__ else _FastDumper
    return yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


def exp_config(ftj: FineTuneJob, attempt: int = 1) -> str:
    settings = ftj.spec.exp_config.model_dump(mode="python")
    settings["process_settings"]["multi_node_settings"] = multinode.multi_node_settings(ftj, attempt)
    return dump_yaml(settings)


# With several ranks, each reads its own env_config (its own log, its own multi-node env file), so that
# ranks sharing an outputDir on one NFS export never write, truncate or move each other's files.
RANK = "$(NODE_RANK)"  # expanded by the kubelet from the rank's environment
# In the one env_config the ConfigMap holds for every rank (its size does not grow with numNodes): each
# rank's entrypoint writes its own copy with its rank here. The models refuse it in user text.
RANK_IN_FILE = RANK_PLACEHOLDER
# Where a rank's own env_config is written (an emptyDir of the pod), and the template's place.
RANK_CONFIG_DIR = "/run/finetune-operator"


def env_config(ftj: FineTuneJob, rank: int | str | None = None) -> str:
    settings = ftj.spec.env_config.model_dump(mode="python")
    paths = settings["path_settings"]
    paths["output_dir"] = output_dir(ftj)
    paths["log_name"] = run_log_name(ftj, rank)
    model = ftj.spec.model
    if model is not None and "model_name_or_path" not in ftj.spec.env_config.path_settings.model_fields_set:
        paths["model_name_or_path"] = model.trainer_path()  # a value of the user's is kept (and noted)
    if rank is not None and paths["multi_node_env_path"]:
        paths["multi_node_env_path"] = rank_path(paths["multi_node_env_path"], rank)
    return dump_yaml(settings)


def rank_path(path: str, rank: int | str) -> str:
    return f"{path}.rank-{rank}"


def dataset_config(spec: FineTuneJobSpec) -> str:
    """One YAML document per dataset, separated by `---`, as the trainer requires."""
    return "---\n".join(dump_yaml(block) for block in spec.datasets())


def run_id(ftj: FineTuneJob) -> str:
    """Names this run in shared directories: the name to read, the uid to tell re-creations apart."""
    uid = (ftj.metadata.uid or "")[:8]
    return f"{ftj.metadata.name}-{uid}" if uid else ftj.metadata.name


def pushes(ftj: FineTuneJob) -> bool:
    return ftj.spec.output is not None and ftj.spec.output.image is not None


def output_dir(ftj: FineTuneJob) -> str:
    """Where the trainer writes its output: the user's outputDir, but for a FineTuneJob that pushes its
    output, the run's own directory in it (<outputDir>/<name>-<uid8>), since the push packs the whole
    directory and outputDir may be shared (the default is one path for every FineTuneJob): it must
    carry this run's model, never another's."""
    given = ftj.spec.env_config.path_settings.output_dir
    return posixpath.join(given, run_id(ftj)) if pushes(ftj) else given


def run_log_name(ftj: FineTuneJob, rank: int | str | None = None) -> str:
    """The user's logName with this run's id (and rank) before its extension: two FineTuneJobs, or two
    ranks, writing to one outputDir (the default on a shared NFS export) each judge their own log."""
    directory, name = posixpath.split(ftj.spec.env_config.path_settings.log_name)
    stem, extension = posixpath.splitext(name)
    run = run_id(ftj) if rank is None else f"{run_id(ftj)}.rank-{rank}"
    return posixpath.join(directory, f"{stem}.{run}{extension}")


def log_file(ftj: FineTuneJob, rank: int | str | None = None) -> str:
    """Where the trainer's log lands: a relative logName is under the trainer's output_dir."""
    return posixpath.normpath(posixpath.join(output_dir(ftj), run_log_name(ftj, rank)))


def log_file_value(ftj: FineTuneJob, multi_node: bool) -> str:
    """log_file() as the entrypoint's env value: passed on unchanged by the kubelet, but for the rank of a
    multi-node run, a reference to NODE_RANK that the kubelet fills in (each rank's own log)."""
    if not multi_node:
        return literal(log_file(ftj))
    # The rank is only in the file name, after the run id and before the user's extension.
    directory = posixpath.dirname(log_file(ftj, 0))
    extension = posixpath.splitext(posixpath.basename(ftj.spec.env_config.path_settings.log_name))[1]
    name = posixpath.basename(run_log_name(ftj, 0)).removesuffix(f"0{extension}")
    return literal(posixpath.join(directory, name)) + RANK + literal(extension)


def config_files(ftj: FineTuneJob, attempt: int = 1) -> dict[str, str]:
    """ConfigMap data of an attempt: the three trainer files and the user's two scripts."""
    spec = ftj.spec
    return {
        EXP_CONFIG_FILE: exp_config(ftj, attempt),
        ENV_CONFIG_FILE: env_config(ftj, RANK_IN_FILE if ftj.spec.num_nodes > 1 else None),
        TRAIN_DATA_FILE: dataset_config(spec),
        PRESCRIPT_FILE: spec.prescript,
        POSTSCRIPT_FILE: spec.postscript,
    }
