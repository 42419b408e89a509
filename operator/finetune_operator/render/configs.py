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

from finetune_operator.api.resource import FineTuneJob
from finetune_operator.api.spec import FineTuneJobSpec

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


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if not LINE_BREAKS.isdisjoint(text) else "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


def exp_config(spec: FineTuneJobSpec) -> str:
    return dump_yaml(spec.exp_config.model_dump(mode="python"))


def env_config(ftj: FineTuneJob) -> str:
    settings = ftj.spec.env_config.model_dump(mode="python")
    settings["path_settings"]["log_name"] = run_log_name(ftj)
    return dump_yaml(settings)


def dataset_config(spec: FineTuneJobSpec) -> str:
    """One YAML document per dataset, separated by `---`, as the trainer requires."""
    return "---\n".join(dump_yaml(block) for block in spec.datasets())


def run_id(ftj: FineTuneJob) -> str:
    """Names this run in shared directories: the name to read, the uid to tell re-creations apart."""
    uid = (ftj.metadata.uid or "")[:8]
    return f"{ftj.metadata.name}-{uid}" if uid else ftj.metadata.name


def run_log_name(ftj: FineTuneJob) -> str:
    """The user's logName with this run's id before its extension: two FineTuneJobs writing to one
    outputDir (the default on a shared NFS export) each judge their own log."""
    directory, name = posixpath.split(ftj.spec.env_config.path_settings.log_name)
    stem, extension = posixpath.splitext(name)
    return posixpath.join(directory, f"{stem}.{run_id(ftj)}{extension}")


def log_file(ftj: FineTuneJob) -> str:
    """Where the trainer's log lands: a relative logName is under outputDir."""
    output_dir = ftj.spec.env_config.path_settings.output_dir
    return posixpath.normpath(posixpath.join(output_dir, run_log_name(ftj)))


def config_files(ftj: FineTuneJob) -> dict[str, str]:
    """ConfigMap data: the three trainer files and the user's two scripts."""
    spec = ftj.spec
    return {
        EXP_CONFIG_FILE: exp_config(spec),
        ENV_CONFIG_FILE: env_config(ftj),
        TRAIN_DATA_FILE: dataset_config(spec),
        PRESCRIPT_FILE: spec.prescript,
        POSTSCRIPT_FILE: spec.postscript,
    }
