"""The FineTuneJob status: phase, metav1.Condition-shaped conditions, and training progress.

Progress uses the field names of Kubeflow Trainer's TrainJob `trainerStatus` (KEP-2779), so tools
that learn one read the other.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, StringConstraints

from finetune_operator.api.base import ApiModel

Phase = Literal["Pending", "Queued", "Running", "Suspended", "Succeeded", "Failed"]
PHASES: tuple[Phase, ...] = get_args(Phase)
TERMINAL_PHASES: tuple[Phase, ...] = ("Succeeded", "Failed")
# Phases whose Event is Normal; the others are Warnings.
NORMAL_PHASES: tuple[Phase, ...] = ("Pending", "Queued", "Running", "Suspended", "Succeeded")
MAX_EVICTIONS = 10  # the evictions kept in status, newest last
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Condition(ApiModel):
    """One aspect of the FineTuneJob's state, in the shape of metav1.Condition."""

    type: Annotated[str, StringConstraints(max_length=316)] = Field(
        description=(
            "Running, Suspended, Succeeded, Failed, Stalled, Reconciling, PodCreateFailed, LogUnreadable, Progressing, "
            "ModelPathMismatch or CleanedUp."
        )
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation this condition was set for."
    )
    last_transition_time: Timestamp = Field(description="When the status last changed.")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="CamelCase reason, such as JobCreated, TrainingComplete or BackoffLimitExceeded."
    )
    message: Annotated[str, StringConstraints(max_length=32768)] = Field("", description="Human-readable details.")


class Metric(ApiModel):
    """A named training metric (Kubeflow Trainer's trainerStatus.metrics entry)."""

    name: Annotated[str, StringConstraints(max_length=64)] = Field(
        description="epoch, totalEpochs, iteration, iterationsPerEpoch, step, totalSteps, loss or tokensPerSecond."
    )
    value: Annotated[str, StringConstraints(max_length=64)] = Field(description="The value, as a string.")


MAX_LOSS_POINTS = 32


class LossPoint(ApiModel):
    """The loss the trainer logged, at a step."""

    step: int = Field(ge=0, description="Completed steps when the loss was read.")
    loss: Annotated[str, StringConstraints(max_length=64)] = Field(description="The loss, as the trainer wrote it.")


class Checkpoints(ApiModel):
    """The trainer's `[Save Model_Checkpoint]` saves, from its log."""

    count: int = Field(ge=0, description="Saves started so far in this run.")
    last_time: Timestamp | None = Field(
        None, description="When the last save started, by the trainer's clock as its log writes it (taken as UTC)."
    )
    last_duration_seconds: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="How long the last finished save took, in seconds, as the trainer logged it."
    )


class TrainerStatus(ApiModel):
    """Training progress read from the trainer's log."""

    progress_percentage: int | None = Field(None, ge=0, le=100, description="Completed steps in percent.")
    estimated_remaining_seconds: int | None = Field(
        None, ge=0, description="Estimated seconds to the end, from the log's own timestamps."
    )
    estimated_remaining_time: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="estimatedRemainingSeconds for humans, such as 1h2m (the ETA column)."
    )
    metrics: Annotated[list[Metric], Field(max_length=32)] = Field(
        default_factory=list,
        description="Latest metrics by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    last_updated_time: Timestamp | None = Field(None, description="When this progress was last read.")
    loss_history: Annotated[list[LossPoint], Field(max_length=MAX_LOSS_POINTS)] | None = Field(
        None,
        description=(
            f"The loss over the run, at most {MAX_LOSS_POINTS} points spread over the steps (older points are "
            "dropped where they lie closest together), oldest first."
        ),
    )
    loss_trend: Annotated[str, StringConstraints(max_length=MAX_LOSS_POINTS)] | None = Field(
        None, description="lossHistory drawn as a sparkline, such as ▇▅▄▃▂ (the TREND column); × for nan or inf."
    )
    checkpoints: Checkpoints | None = Field(None, description="The trainer's model checkpoint saves.")

    def metric_values(self) -> dict[str, str]:
        """The latest value of each metric, by name."""
        return {metric.name: metric.value for metric in self.metrics}


class OutputStatus(ApiModel):
    """Where the fine-tuned model was pushed (spec.output.image)."""

    reference: Annotated[str, StringConstraints(max_length=1024)] = Field(
        description="The pushed artifact, pinned by digest: repository:tag@sha256:..."
    )
    digest: Annotated[str, StringConstraints(max_length=128)] = Field(
        description="Digest of the pushed manifest, as the registry serves it (sha256:...)."
    )
    pushed_time: Timestamp | None = Field(None, description="When the push finished.")


class Eviction(ApiModel):
    """The queue (Kueue) took the training back: preempted, deactivated, or out of time."""

    time: Timestamp = Field(description="When Kueue evicted the Workload (its Evicted condition's transition).")
    reason: Annotated[str, StringConstraints(max_length=128)] = Field(
        description="Kueue's reason: Preempted, Deactivated, PodsReadyTimeout, ClusterQueueStopped, ..."
    )
    message: Annotated[str, StringConstraints(max_length=1024)] = Field(
        "", description="Kueue's words, such as which workload it made room for."
    )


class AcceleratorSeconds(ApiModel):
    """Time an extended resource (an accelerator) was held by the training's pods."""

    resource: Annotated[str, StringConstraints(max_length=316)] = Field(
        description="The extended resource, such as phison.com/ai100 or otterscale.com/vgpu."
    )
    seconds: int = Field(ge=0, description="Sum over the pods of their running time times their request.")


class Usage(ApiModel):
    """What the training's pods held, over all attempts and ranks."""

    accelerator_seconds: Annotated[list[AcceleratorSeconds], Field(max_length=32)] = Field(
        default_factory=list,
        description="Accelerator-seconds by extended resource (divide by 3600 for GPU-hours).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["resource"]},
    )
    counted_until: Timestamp = Field(description="The pods' running time is counted up to this moment.")

    def seconds(self) -> dict[str, int]:
        return {item.resource: item.seconds for item in self.accelerator_seconds}


class FineTuneJobStatus(ApiModel):
    """What the operator observed. Written only by the operator, through the status subresource."""

    observed_generation: int | None = Field(None, ge=0, description="The metadata.generation last acted on.")
    phase: Phase | None = Field(
        None,
        description=(
            "Pending, Queued (held by its queue, Kueue: waiting for admission, or evicted), Running, Suspended "
            "(spec.suspend), Succeeded or Failed."
        ),
    )
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(
        default_factory=list,
        description="Current conditions, one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    start_time: Timestamp | None = Field(None, description="When the training Job was created.")
    completion_time: Timestamp | None = Field(None, description="When the training reached Succeeded or Failed.")
    job_name: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        None, description="Name of the training Job."
    )
    nodes: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        None, description="Ranks running of the ranks asked for, such as 2/2 (the NODES column)."
    )
    attempt: int | None = Field(
        None,
        ge=1,
        description=(
            "Which attempt of the whole group of ranks runs, from 1 (numNodes > 1: after a failed attempt the "
            "operator starts all ranks anew, up to backoffLimit more times)."
        ),
    )
    failed_attempts: int | None = Field(None, ge=0, description="Attempts of the group that failed so far.")
    cleanup_after: Timestamp | None = Field(
        None,
        description=(
            "When the TTL will remove the Job, its pods and the ConfigMap (ttlSecondsAfterFinished after a "
            "success, ttlSecondsAfterFailure after a failure); unset while it will not."
        ),
    )
    cleanup_time: Timestamp | None = Field(
        None, description="When the TTL removed the Job, its pods and the ConfigMap."
    )
    trainer_status: TrainerStatus | None = Field(None, description="Training progress from the trainer's log.")
    output: OutputStatus | None = Field(None, description="Where the fine-tuned model was pushed (spec.output.image).")
    evictions: Annotated[list[Eviction], Field(max_length=MAX_EVICTIONS)] | None = Field(
        None,
        description=f"The queue's evictions of the training (Kueue), the last {MAX_EVICTIONS}, newest last.",
    )
    usage: Usage | None = Field(
        None, description="Accelerator-seconds the training's pods held (counted when the status is written anyway)."
    )
