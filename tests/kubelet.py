"""What the kubelet does to a container's env values, command and args before the container starts.

A Python rendering of k8s.io/kubernetes third_party/forked/golang/expansion (Expand, MappingFuncFor) and
of how the kubelet applies it (pkg/kubelet/kubelet_pods.go): each env value is expanded with the variables
defined before it, then command and args with all of them. `$$` becomes `$`; `$(NAME)` becomes NAME's
value when it is defined and stays as written when it is not; any other `$` stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _reference(text: str) -> tuple[str, bool, int]:
    """After a `$`: what it reads as, whether that is a variable name, and how many characters it takes."""
    if text[0] == "$":
        return "$", False, 1
    if text[0] == "(":
        closer = text.find(")", 1)
        if closer != -1:
            return text[1:closer], True, closer + 1
        return "$(", False, 1
    return "$" + text[0], False, 1


def expand(text: str, variables: Mapping[str, str]) -> str:
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_name, advance = _reference(text[cursor + 1 :])
            out.append(variables.get(read, f"$({read})") if is_name else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def container_environment(container: dict[str, Any], field_values: Mapping[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: `valueFrom` values from `field_values` (by name)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        env[item["name"]] = expand(item["value"], env) if "value" in item else field_values[item["name"]]
    return env


def container_command(container: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    return [expand(part, env) for part in [*container.get("command", []), *container.get("args", [])]]
