"""What the operator will make of a stored FineTuneJob, or why it will make nothing.

Runs on whatever a user stored, so it never raises: every problem, expected or not, becomes a line
of an InvalidSpec message. The work is bounded by the models (sizes, YAML aliases, quantities), and
the controller runs it off its event loop all the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from finetune_operator.api import messages as msg
from finetune_operator.api.quantity import is_extended_resource, parse_quantity
from finetune_operator.api.resource import FineTuneJob, InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.spec import model_path_note
from finetune_operator.render.manifests import privileges, render, tolerates_everything
from finetune_operator.render.objects import owner_reference


@dataclass(frozen=True)
class Facts:
    """What the controller reads of a valid spec once its children exist: a few numbers and names, so
    that it need not keep the whole spec (up to the API server's object size) of every FineTuneJob."""

    num_nodes: int
    suspend: bool
    backoff_limit: int
    ttl_seconds_after_finished: int | None
    ttl_seconds_after_failure: int | None
    ttl_policy: str
    max_iter: int
    push_repository: str | None
    # What each pod (each rank) requests of every extended resource (an accelerator), for the usage.
    accelerators: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, ftj: FineTuneJob) -> Facts:
        spec = ftj.spec
        image = spec.output.image if spec.output is not None else None
        return cls(
            num_nodes=spec.num_nodes,
            suspend=spec.suspend,
            backoff_limit=spec.backoff_limit,
            ttl_seconds_after_finished=spec.ttl_seconds_after_finished,
            ttl_seconds_after_failure=spec.ttl_seconds_after_failure,
            ttl_policy=spec.ttl_policy,
            max_iter=spec.exp_config.run_settings.max_iter,
            push_repository=image.repository if image is not None else None,
            accelerators=accelerators(spec.resources.requests, spec.resources.limits),
        )


def accelerators(requests: dict[str, int | str], limits: dict[str, int | str]) -> tuple[tuple[str, int], ...]:
    """Extended resources a pod requests, by name (a limit alone is the request too, as Kubernetes
    defaults it; the models allow whole amounts only, equal where both are given)."""
    given = {**limits, **requests}
    return tuple(
        sorted((name, int(parse_quantity(value))) for name, value in given.items() if is_extended_resource(name))
    )


@dataclass(frozen=True)
class Rendered:
    """The first attempt's Job and ConfigMap, rendered once with the plan (off the event loop): the
    controller makes them from copies, and renders again only for a later attempt."""

    job: dict[str, Any]
    config_map: dict[str, Any]  # without its owner (the Job, once made)


@dataclass(frozen=True)
class Plan:
    """A valid FineTuneJob, whose children render, and its facts; or the problems that stop it. The
    model (`ftj`) and the rendered children may be dropped once the children exist: the facts stay."""

    ftj: FineTuneJob | None = None
    problems: list[str] = field(default_factory=list)
    model_note: str | None = None  # spec.model and the user's modelNameOrPath disagree (kept as written)
    facts: Facts | None = None
    rendered: Rendered | None = None

    def light(self) -> Plan:
        """This plan without its model and its rendered children."""
        return replace(self, ftj=None, rendered=None)

    def first_job(self, attempt: int) -> dict[str, Any] | None:
        """A copy of the rendered Job, for the first attempt; None for a later one (rendered anew)."""
        if attempt != 1 or self.rendered is None:
            return None
        return copy.deepcopy(self.rendered.job)

    def first_config_map(self, attempt: int, job: dict[str, Any]) -> dict[str, Any] | None:
        """A copy of the rendered ConfigMap, owned by the Job made: for the first attempt only."""
        if attempt != 1 or self.rendered is None:
            return None
        made = copy.deepcopy(self.rendered.config_map)
        made["metadata"]["ownerReferences"] = [owner_reference("batch/v1", "Job", job)]
        return made


@dataclass(frozen=True)
class Powers:
    """What the operator's installer allows a FineTuneJob beyond a Pod Security "baseline" pod (the
    operator sees no user: being allowed to create a FineTuneJob is not being allowed these)."""

    privileged: bool = False  # --allow-privileged
    any_toleration: bool = False  # --allow-any-toleration


def plan(body: dict[str, Any], allowed: Powers) -> Plan:
    try:
        ftj = load_finetunejob(body)
        powers = privileges(ftj.spec.security_context)
        if powers and not allowed.privileged:
            return Plan(problems=[f"spec.securityContext: {msg.privileged(powers)}"])
        anywhere = tolerates_everything(ftj.spec.tolerations)
        if anywhere and not allowed.any_toleration:
            return Plan(problems=[f"spec.tolerations: {msg.tolerates_everything(anywhere)}"])
        # Everything it makes renders: no surprise when the children are made.
        made = {child["kind"]: child for child in render(ftj)}
        note = model_path_note(ftj.spec.model, ftj.spec.env_config.path_settings)
        rendered = Rendered(made["Job"], made["ConfigMap"])
        return Plan(ftj=ftj, model_note=note, facts=Facts.of(ftj), rendered=rendered)
    except InvalidFineTuneJob as error:
        return Plan(problems=error.problems)
    except Exception as error:  # a defect, not the user's: still a message, never a stuck object
        return Plan(problems=[f"the FineTuneJob could not be rendered: {type(error).__name__}: {str(error)[:300]}"])
