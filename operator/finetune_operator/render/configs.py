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


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line text as literal blocks, so scripts stay readable."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


def exp_config(spec: FineTuneJobSpec) -> str:
    return dump_yaml(spec.exp_config.model_dump(mode="python"))


def env_config(spec: FineTuneJobSpec) -> str:
    return dump_yaml(spec.env_config.model_dump(mode="python"))


def dataset_config(spec: FineTuneJobSpec) -> str:
    """One YAML document per dataset, separated by `---`, as the trainer requires."""
    return "---\n".join(dump_yaml(block) for block in spec.datasets())


def log_file(spec: FineTuneJobSpec) -> str:
    """Where the trainer's log lands: a relative logName is under outputDir."""
    paths = spec.env_config.path_settings
    return posixpath.normpath(posixpath.join(paths.output_dir, paths.log_name))


def config_files(spec: FineTuneJobSpec) -> dict[str, str]:
    """ConfigMap data: the three trainer files and the user's two scripts."""
    return {
        EXP_CONFIG_FILE: exp_config(spec),
        ENV_CONFIG_FILE: env_config(spec),
        TRAIN_DATA_FILE: dataset_config(spec),
        PRESCRIPT_FILE: spec.prescript,
        POSTSCRIPT_FILE: spec.postscript,
    }
