"""What a training pod said as it ended: the entrypoint's termination message (the trainer's verdict,
the pushed output), and the model-loader's failure.

Everything here is read from pod status, which the pod itself writes: each value is checked for form
before it reaches the FineTuneJob's status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from finetune_operator.api.base import LOADER_CONTAINER, MODEL_LOAD_FAILED, OUTPUT_PUSH_FAILED
from finetune_operator.observe.containers import ends

# Entrypoint reasons that mean the trainer (not the platform) failed.
TRAINER_FAILURES = {"TrainerExitCode", "TrainerReportedFailure", "TrainingIncomplete"}
# The run's own stages that failed around the trainer (the user's scripts, the setup, a run ended early):
# told with their own reason and the entrypoint's words, whatever the log says.
STAGE_FAILURES = frozenset(
    {"PrescriptFailed", "SetupFailed", "TrainerFailed", "PostscriptFailed", "OutputDirUnavailable", OUTPUT_PUSH_FAILED}
)
SUMMARY_KEYS = frozenset(
    {
        "verdict",
        "reason",
        "exitCode",
        "step",
        "loss",
        "evidence",
        "outputReference",
        "outputTag",
        "outputDigest",
        "pushedTime",
    }
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
PUSHED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# What may follow the repository in a pushed reference: a tag (the distribution spec's grammar), a digest.
AFTER_REPOSITORY = re.compile(r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}")
MAX_REFERENCE = 1024
MAX_MESSAGE = 1500


@dataclass(frozen=True)
class TrainerVerdict:
    """What the trainer itself said: from its log, or the entrypoint's termination message."""

    verdict: str  # running, complete, failed
    evidence: str | None = None
    reason: str | None = None  # a failure's own reason, when it is not the trainer's (OutputPushFailed)


@dataclass(frozen=True)
class PushedOutput:
    """Where the entrypoint pushed the fine-tuned model."""

    reference: str
    digest: str
    pushed_time: str | None


def termination_summary(message: str | None) -> dict[str, str]:
    """The `key: value` lines the entrypoint writes to the container's termination message."""
    summary: dict[str, str] = {}
    # Only "\n" ends a line: the entrypoint writes it, while splitlines() would also break on
    # \x1c-\x1e, \x85 or \u2028 inside a log line quoted as evidence.
    for line in (message or "").split("\n"):
        key, sep, value = line.partition(": ")
        if sep and key in SUMMARY_KEYS:
            summary[key] = value.strip()
    return summary


def trainer_verdict_from_termination(message: str | None) -> TrainerVerdict | None:
    summary = termination_summary(message)
    if summary.get("verdict") == "failed" and summary.get("reason") in TRAINER_FAILURES:
        return TrainerVerdict("failed", summary.get("evidence"))
    if summary.get("verdict") == "failed" and summary.get("reason") in STAGE_FAILURES:
        return TrainerVerdict("failed", summary.get("evidence"), summary["reason"])
    if summary.get("verdict") == "succeeded":
        return TrainerVerdict("complete", summary.get("evidence"))
    return None


def pushed_output(message: str | None) -> PushedOutput | None:
    """The pushed artifact, if the message names one in due form: a digest, and a reference pinned by it
    (with its tag, so that a reader sees which one: repository:tag@sha256:...)."""
    summary = termination_summary(message)
    digest, reference = summary.get("outputDigest", ""), summary.get("outputReference", "")
    if DIGEST.fullmatch(digest) is None or not reference.endswith("@" + digest):
        return None
    tag = summary.get("outputTag", "")
    if tag and "@" not in tag and not any(c.isspace() for c in tag):
        reference = f"{tag}@{digest}"
    if len(reference) > MAX_REFERENCE:
        return None
    when = summary.get("pushedTime")
    return PushedOutput(reference, digest, when if when and PUSHED_TIME.fullmatch(when) else None)


def of_repository(reference: str, repository: str) -> bool:
    """Whether a pushed reference is in this repository: the trainer's container (which runs the user's
    code) writes the termination message, and only a push to the requested repository is believed."""
    return reference.startswith(repository) and AFTER_REPOSITORY.fullmatch(reference[len(repository) :]) is not None


def loader_failure(pod: dict[str, Any] | None) -> TrainerVerdict | None:
    """The model copy's failure in this pod, with the copy's own last words."""
    for ended in ends(pod, LOADER_CONTAINER, "initContainerStatuses"):
        code = ended.get("exitCode")
        if isinstance(code, int) and code != 0:
            said = str(ended.get("message") or "").strip()[-MAX_MESSAGE:]
            text = f"the model copy ({LOADER_CONTAINER}) exited with code {code}"
            return TrainerVerdict("failed", f"{text}: {said}" if said else text, MODEL_LOAD_FAILED)
    return None
