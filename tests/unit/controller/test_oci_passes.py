"""spec.model and spec.output through the reconcile pass: what a push leaves in status and Events."""

from __future__ import annotations

from typing import Any

from tests.unit.controller.fakes import World

LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "10m"}}}
OUTPUT = {"output": {"image": {"repository": "registry.example.com/team/out"}}}
DIGEST = "sha256:" + "0123456789abcdef" * 4
COMPLETE = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-28T12:01:00Z"}]
FAILED = [
    {
        "type": "Failed",
        "status": "True",
        "reason": "PodFailurePolicy",
        "message": "Container trainer for pod ns/run-x failed with exit code 5 matching FailJob rule at index 0",
        "lastTransitionTime": "2026-11-28T12:01:00Z",
    }
]


def _pod(message: str, code: int, phase: str) -> dict[str, Any]:
    terminated = {"exitCode": code, "message": message, "finishedAt": "2026-11-28T12:00:59Z"}
    return {
        "metadata": {"name": "run-x", "creationTimestamp": "2026-11-28T12:00:00Z", "labels": {}},
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]},
    }


def test_a_push_lands_in_status_with_one_event() -> None:
    world = World()
    body = world.add({**LIGHT, **OUTPUT})
    world.event(body)
    tag = f"run-{body['metadata']['uid'][:8]}"
    reference = f"registry.example.com/team/out:{tag}@{DIGEST}"
    said = (
        "verdict: succeeded\nreason: TrainingComplete\nexitCode: 0\nevidence: training complete!\n"
        f"outputReference: {reference}\noutputDigest: {DIGEST}\npushedTime: 2026-11-28T12:00:58Z\n"
    )
    world.deliver_pods([_pod(said, 0, "Succeeded")])
    world.deliver_job(succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:00Z")
    world.event(world.stored(body))
    status = world.last_status()
    assert status["phase"] == "Succeeded"
    assert status["output"] == {"reference": reference, "digest": DIGEST, "pushedTime": "2026-11-28T12:00:58Z"}
    assert ("run", "Normal", "OutputPushed", f"pushed the fine-tuned model to {reference}") in world.kube.events
    world.event(world.stored(body))
    assert world.kube.reasons().count("OutputPushed") == 1


def _pushed_said(reference: str) -> str:
    return (
        "verdict: succeeded\nreason: TrainingComplete\nexitCode: 0\nevidence: training complete!\n"
        f"outputReference: {reference}\noutputDigest: {DIGEST}\n"
    )


def test_only_the_jobs_own_pod_and_the_requested_repository_make_status_output() -> None:
    """A pod that only carries the FineTuneJob's label (anyone who may create pods can set it), or a
    trainer that names another repository, never becomes status.output nor an OutputPushed Event."""
    world = World()
    body = world.add({**LIGHT, **OUTPUT})
    world.event(body)
    # In the requested repository even: only its pod's owner tells it apart.
    forged = _pod(_pushed_said(f"registry.example.com/team/out:forged@{DIGEST}"), 0, "Succeeded")
    forged["metadata"]["creationTimestamp"] = "2026-11-28T12:00:30Z"  # newer than the Job's own pod
    world.deliver_pods([_pod("verdict: succeeded\nreason: TrainingComplete\n", 0, "Succeeded")])
    world.pods[("ns", "run")].append(forged)
    world.deliver_job(succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:00Z")
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Succeeded"
    assert "output" not in world.last_status()
    assert "OutputPushed" not in world.kube.reasons()


def test_a_push_to_another_repository_is_not_believed() -> None:
    world = World()
    body = world.add({**LIGHT, **OUTPUT})
    world.event(body)
    for reference in (
        f"evil.example.com/bob/backdoored:v1@{DIGEST}",
        f"registry.example.com/team/out-evil:v1@{DIGEST}",
        f"registry.example.com/team/out/x:v1@{DIGEST}",
    ):
        world.deliver_pods([_pod(_pushed_said(reference), 0, "Succeeded")])
        world.deliver_job(succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:00Z")
        world.event(world.stored(body))
        assert "output" not in world.last_status(), reference


def test_without_an_output_image_no_pod_claims_a_push() -> None:
    world = World()
    body = world.add(LIGHT)
    world.event(body)
    world.deliver_pods([_pod(_pushed_said(f"registry.example.com/team/out:v1@{DIGEST}"), 0, "Succeeded")])
    world.deliver_job(succeeded=1, conditions=COMPLETE, completionTime="2026-11-28T12:01:00Z")
    world.event(world.stored(body))
    assert world.last_status()["phase"] == "Succeeded" and "output" not in world.last_status()


def test_a_failed_push_fails_with_its_own_reason_and_the_tools_words() -> None:
    world = World()
    body = world.add({**LIGHT, **OUTPUT})
    world.event(body)
    said = (
        "verdict: failed\nreason: OutputPushFailed\nexitCode: 5\n"
        "evidence: training complete; push failed: crane: UNAUTHORIZED: authentication required\n"
    )
    world.deliver_pods([_pod(said, 5, "Failed")])
    world.deliver_job(failed=1, conditions=FAILED)
    world.event(world.stored(body))
    failed = world.condition("Failed")
    assert (world.last_status()["phase"], failed["reason"]) == ("Failed", "OutputPushFailed")
    assert failed["message"].startswith("training complete; push failed: crane: UNAUTHORIZED")
    assert "output" not in world.last_status()


def test_a_model_path_elsewhere_is_a_standing_condition_and_one_warning() -> None:
    world = World()
    spec = {
        **LIGHT,
        "model": {"image": {"reference": "registry.example.com/m:v1"}},
        "envConfig": {"pathSettings": {"modelNameOrPath": "/mnt/other"}},
    }
    body = world.add(spec)
    world.event(body)
    world.deliver_job(active=1)
    world.event(world.stored(body))
    condition = world.condition("ModelPathMismatch")
    assert (condition["status"], condition["reason"]) == ("True", "ModelNameOrPathElsewhere")
    assert "'/mnt/other', outside '/data/model'" in condition["message"]
    assert condition["observedGeneration"] == body["metadata"]["generation"]
    assert [e for e in world.kube.events if e[2] == "ModelPathMismatch"] == [
        ("run", "Warning", "ModelPathMismatch", condition["message"])
    ]
    world.event(world.stored(body))  # the condition stands: no second Warning
    assert world.kube.get("Job", "ns", "run") is not None  # a warning, not a refusal
