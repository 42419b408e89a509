"""Properties of rendering, over user text hypothesis makes up (bounded by count, not by time).

- User text never changes the structure of a rendered file or of the pod: only the values it fills.
- What `render` prints parses back to the very objects it rendered.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.render.configs import dump_yaml
from finetune_operator.render.manifests import render
from tests.kubelet import container_environment
from tests.rule_cases import finetunejob

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# Any text, with the characters that break naive YAML and shell the most likely.
nasty = st.sampled_from([*list("'\"\\$`:#-[]{}|>&*!%@,?\n\r\t \x85\u2028\u2029\x1e\x00\x7f"), "---", "...", "{{", "}}"])
text = st.lists(st.one_of(st.text(max_size=8), nasty), max_size=12).map("".join)


def _user_spec(words: dict[str, str]) -> dict[str, Any]:
    return {
        "prescript": words["prescript"],
        "postscript": words["postscript"],
        "trainData": [
            {
                "name": "ds",
                "dataPath": words["data"] or "x",
                "systemPrompt": words["system"],
                "userPrompt": words["user"] + "{question}",
            }
        ],
        "envConfig": {
            "pathSettings": {
                "modelNameOrPath": words["model"],
                "outputDir": "/out/" + words["output"],
                "logName": (words["log"] or "x") + ".log",
            }
        },
    }


def _shape(value: Any) -> Any:
    """The structure of a value with every string replaced by one placeholder."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return "<str>" if isinstance(value, str) else value


def _rendered(spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    try:
        return render(load_finetunejob(finetunejob(spec)))
    except InvalidFineTuneJob:
        return None


PLAIN = _rendered(
    _user_spec(dict.fromkeys(("prescript", "postscript", "data", "system", "user", "model", "output", "log"), "a"))
)
assert PLAIN is not None


@PROPERTY
@given(words=st.fixed_dictionaries({k: text for k in ("prescript", "postscript", "data", "system", "user", "model")}))
def test_user_text_fills_values_and_changes_no_structure(words: dict[str, str]) -> None:
    words = {**words, "output": "o", "log": "l"}
    rendered = _rendered(_user_spec(words))
    assume(rendered is not None)  # refused text (e.g. containing data_path) is the models' business
    assert rendered is not None and PLAIN is not None
    (job, config_map), (plain_job, plain_map) = rendered, PLAIN
    assert _shape(job) == _shape(plain_job)
    assert config_map["data"].keys() == plain_map["data"].keys()
    assert config_map["data"]["prescript.sh"] == words["prescript"]
    assert config_map["data"]["postscript.sh"] == words["postscript"]
    for key in ("exp_config.yaml", "env_config.yaml", "QA_dataset_config.yaml"):
        parsed = list(yaml.safe_load_all(config_map["data"][key]))
        assert _shape(parsed) == _shape(list(yaml.safe_load_all(plain_map["data"][key]))), key
    (dataset,) = yaml.safe_load_all(config_map["data"]["QA_dataset_config.yaml"])
    assert dataset["ds"]["system_prompt"] == words["system"]
    assert dataset["ds"]["user_prompt"] == words["user"] + "{question}"
    env = yaml.safe_load(config_map["data"]["env_config.yaml"])["path_settings"]
    assert env["model_name_or_path"] == words["model"]
    # The trainer counts `data_path` and `---` in its dataset config: user text adds neither.
    assert config_map["data"]["QA_dataset_config.yaml"].count("data_path") == 1


@PROPERTY
@given(words=st.fixed_dictionaries({k: text for k in ("output", "log")}))
def test_paths_reach_the_pod_as_data(words: dict[str, str]) -> None:
    fixed = dict.fromkeys(("prescript", "postscript", "data", "system", "user", "model"), "a")
    rendered = _rendered(_user_spec({**fixed, **words}))
    assume(rendered is not None)
    assert rendered is not None and PLAIN is not None
    job, plain_job = rendered[0], PLAIN[0]
    container, plain = (
        job["spec"]["template"]["spec"]["containers"][0],
        plain_job["spec"]["template"]["spec"]["containers"][0],
    )
    assert container["args"] == plain["args"] and container["command"] == plain["command"]
    assert [e["name"] for e in container["env"]] == [e["name"] for e in plain["env"]]
    assert (
        container_environment(container, {})["FTO_OUTPUT_DIR"] == "/out/" + words["output"]
    )  # as the kubelet makes it


@PROPERTY
@given(words=st.fixed_dictionaries({k: text for k in ("prescript", "postscript", "data", "system", "user", "model")}))
def test_render_output_parses_back_to_the_same_objects(words: dict[str, str]) -> None:
    rendered = _rendered(_user_spec({**words, "output": "o", "log": "l"}))
    assume(rendered is not None)
    assert rendered is not None
    printed = "---\n".join(dump_yaml(manifest) for manifest in rendered)
    assert list(yaml.safe_load_all(printed)) == rendered
