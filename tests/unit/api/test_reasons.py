"""The reasons the operator sets are the ones `api/reasons.py` names, and the README lists them all."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import finetune_operator
from finetune_operator.api.base import MODEL_LOAD_FAILED
from finetune_operator.api.reasons import REASONS
from finetune_operator.observe.attempts import NOT_RETRIED
from finetune_operator.observe.pods import STUCK_REASONS
from finetune_operator.observe.queue import QUEUE_REASONS
from finetune_operator.observe.status import PLATFORM_ENDS
from finetune_operator.observe.termination import STAGE_FAILURES, TRAINER_FAILURES
from finetune_operator.render.entrypoint import ENTRYPOINT

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path(finetune_operator.__file__).parent  # where it is imported from (mutation testing copies it)
# Where each maker of a status or condition takes its reason: (function, positional index).
CAMEL = re.compile(r"(?:[A-Z][a-z]+){2,}")
REASON_ARGUMENT = {
    "Verdict": 1,
    "_log_condition": 1,
    "_progress_condition": 1,
    "_pod_condition": 1,
    "_condition": 2,
    "_waiting": 1,
}


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those of mutmut's mutants (`x_f__mutmut_3`: the code's copies with its strings
    changed), which a mutation run's copy of the package holds beside the code itself."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name:
            continue
        found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def reasons_in_code() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in _nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                index = REASON_ARGUMENT.get(_name(node.func) or "")
                given = [node.args[index]] if index is not None and len(node.args) > index else []
                given += [k.value for k in node.keywords if k.arg == "reason"]
                found |= {g.value for g in given if isinstance(g, ast.Constant) and isinstance(g.value, str)}
            if isinstance(
                node, ast.BoolOp | ast.IfExp
            ):  # a reason's fallback: `given or "JobFailed"`, `… if on else "AsExpected"`
                ends = node.values[-1:] if isinstance(node, ast.BoolOp) else [node.body, node.orelse]
                found |= {
                    e.value
                    for e in ends
                    if isinstance(e, ast.Constant) and isinstance(e.value, str) and CAMEL.fullmatch(e.value)
                }
            if isinstance(node, ast.FunctionDef) and node.name in REASON_ARGUMENT:
                defaults = [d.value for d in node.args.defaults if isinstance(d, ast.Constant)]
                found |= {d for d in defaults if isinstance(d, str)}
    found |= set(re.findall(r"\breason=([A-Z]\w+)", ENTRYPOINT))
    found |= set(re.findall(r"fto_report failed ([A-Z]\w+)", ENTRYPOINT))
    reasons = TRAINER_FAILURES | STAGE_FAILURES | STUCK_REASONS | NOT_RETRIED | PLATFORM_ENDS | QUEUE_REASONS
    return found | reasons | {MODEL_LOAD_FAILED}


def test_every_reason_the_code_sets_is_named_with_its_meaning() -> None:
    found = reasons_in_code()
    assert len(found) > 30  # the scan sees the code: a scan that finds nothing would pass below
    assert sorted(found - REASONS.keys()) == []


def test_every_named_reason_is_set_somewhere_or_passed_on() -> None:
    unused = {name for name, reason in REASONS.items() if not reason.passed_on} - reasons_in_code()
    assert sorted(unused) == []


def test_the_readme_lists_every_reason_of_the_phase() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme[readme.index("in metav1.Condition shape (reasons") : readme.index("`observedGeneration`")]
    named = set(re.findall(r"`([A-Z][A-Za-z]+)`", listed))
    assert sorted(named ^ {name for name, reason in REASONS.items() if reason.phase != "any"}) == []
