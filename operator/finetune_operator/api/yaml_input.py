"""Reading YAML a user wrote, in bounded time and memory, with one kind of error.

PyYAML's safe loader is safe from code execution but not from work: eight levels of `&a [*a, *a, …]`
aliases expand to a billion nodes wherever the result is walked, 3,000 nested `[` exhaust the stack,
and `tag: 2024-13-01` or `!!int abc` raise plain ValueErrors from deep inside. This loader
composes the node graph first (aliases still shared, so it is as small as the text), measures
its depth and its size *as if expanded*, and only then builds Python values. Timestamps stay
strings, as `kubectl` (sigs.k8s.io/yaml) reads them, so a FineTuneJob means the same here and there.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 200_000
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class YamlInputError(ValueError):
    """The text is not YAML this project reads; the message says why, in one line."""


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses once per level: refuse before Python's own stack limit does.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (YamlInputError, yaml.YAMLError):
            raise
        except Exception:  # PyYAML's constructors of explicit tags (`!!int abc`, `!!timestamp x`) raise
            # ValueError, AttributeError, KeyError…: every one means this value does not fit its tag.
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise YamlInputError(
                f"{str(node.value)[:40]!r} is not a valid {kind} (line {node.start_mark.line + 1})"
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # kubectl refuses a key given twice; PyYAML would silently keep the last one.
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise YamlInputError(f"the key {key.value[:40]!r} appears twice (line {key.start_mark.line + 1})")
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)


# Timestamps stay strings, as the API server reads them (a class attribute of the loader's own).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes the graph would have with every alias expanded, counted without expanding it."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            visiting.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(child)] for child in children))
            continue
        if key in visiting:
            raise YamlInputError("an alias refers to a node that contains it (a recursive structure)")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_all(text: str, what: str = "the text", max_nodes: int = MAX_NODES) -> list[Any]:
    """Every document of `text` that is not empty; YamlInputError names what is wrong."""
    try:
        # The reader refuses a control character of the whole text already here, before any parsing.
        loader = _Loader(text)
    except yaml.reader.ReaderError as error:
        raise YamlInputError(unreadable_character(error, text)) from None
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # check_node said there is one: never, but the type allows it
                break
            if expanded_size(node, max_nodes) > max_nodes:
                raise YamlInputError(
                    f"{what} expands to more than {max_nodes} values (YAML aliases repeat what they name)"
                )
            value = loader.construct_document(node)
            _check_numbers(value)
            if value is not None:
                documents.append(value)
        return documents
    except YamlInputError:
        raise
    except yaml.YAMLError as error:
        raise YamlInputError(problem(error)) from None
    except (ValueError, TypeError, RecursionError) as error:
        raise YamlInputError(f"a value cannot be read: {str(error)[:200]}") from None
    finally:
        loader.dispose()


def _check_numbers(value: Any) -> None:
    """JSON, and so the Kubernetes API, has no infinity and no NaN."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise YamlInputError(f"{item} is not a number JSON can carry (.inf and .nan are not allowed)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def unreadable_character(error: yaml.reader.ReaderError, text: str) -> str:
    """Where the character YAML text cannot hold is, and how to write it instead."""
    position = min(max(int(error.position), 0), len(text))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = int(error.character)
    kind = "control character" if code < 0x20 or 0x7F <= code < 0xA0 else "character"
    escape = f"\\x{code:02X}" if code <= 0xFF else f"\\u{code:04X}"
    return (
        f"the {kind} U+{code:04X} at line {line}, column {column} cannot be in YAML text "
        f"(write it escaped inside double quotes, as {escape})"
    )


def problem(error: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line, with where it is."""
    mark = getattr(error, "problem_mark", None)
    text = getattr(error, "problem", None) or str(error)
    text = " ".join(str(text).split())[:200]
    if mark is not None:
        return f"{text} (line {mark.line + 1}, column {mark.column + 1})"
    return text
