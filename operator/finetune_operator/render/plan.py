"""What the operator will make of a stored FineTuneJob, or why it will make nothing.

Runs on whatever a user stored, so it never raises: every problem, expected or not, becomes a line
of an InvalidSpec message. The work is bounded by the models (sizes, YAML aliases, quantities), and
the controller runs it off its event loop all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finetune_operator.api import messages as msg
from finetune_operator.api.resource import FineTuneJob, InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.spec import model_path_note
from finetune_operator.render.manifests import privileges, render, tolerates_everything


@dataclass(frozen=True)
class Plan:
    """A valid FineTuneJob, whose children render; or the problems that stop it."""

    ftj: FineTuneJob | None = None
    problems: list[str] = field(default_factory=list)
    model_note: str | None = None  # spec.model and the user's modelNameOrPath disagree (kept as written)


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
        render(ftj)  # everything it makes renders: no surprise when the children are made
        return Plan(ftj=ftj, model_note=model_path_note(ftj.spec.model, ftj.spec.env_config.path_settings))
    except InvalidFineTuneJob as error:
        return Plan(problems=error.problems)
    except Exception as error:  # a defect, not the user's: still a message, never a stuck object
        return Plan(problems=[f"the FineTuneJob could not be rendered: {type(error).__name__}: {str(error)[:300]}"])
