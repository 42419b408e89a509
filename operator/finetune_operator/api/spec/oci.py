"""What spec.model and spec.output.image share: image references and absolute paths.

References are checked by docker-image-py, a port of the grammar of github.com/distribution/reference
(what container runtimes and registries parse); the CRD carries that library's own expression as its
`matches` rule, so `kubectl apply` and the operator accept the same references (the library also refuses
a few the grammar allows, such as a bare 64-hex name; the operator reports those).
"""

from __future__ import annotations

from typing import Annotated, Any

from docker_image import reference as oci_reference
from docker_image.regexp import REFERENCE_PAT, TAG, ImageRegexps
from pydantic import AfterValidator, Field, StringConstraints

from finetune_operator.api import messages as msg
from finetune_operator.api.base import cel, cel_string
from finetune_operator.api.spec.common import cel_rules
from finetune_operator.api.spec.pod import canonical_path, canonical_path_rules, check_quantity

# distribution/reference's bounds: a repository name of at most 255 characters, a tag of at most 128.
MAX_REFERENCE = 255 + 1 + 128 + 1 + 7 + 128
MAX_REPOSITORY = 255
DIGEST = r"^sha256:[0-9a-f]{64}$"
ANCHORED_TAG = f"^{TAG}$"


def parse_reference(text: str) -> str:
    """An image reference as a runtime reads it (`name[:tag][@digest]`); ValueError names the flaw."""
    try:
        oci_reference.Reference.parse_normalized_named(text)
    except Exception as error:  # the library raises several classes, all meaning "not a reference"
        raise ValueError(f"{msg.IMAGE_REFERENCE} (got {text[:120]!r}: {error})") from None
    if ImageRegexps.REFERENCE_REGEXP.fullmatch(text) is None:  # the CRD's pattern, same words either way
        raise ValueError(f"{msg.IMAGE_REFERENCE} (got {text[:120]!r})")
    return text


def parse_repository(text: str) -> str:
    """A repository to push to: a reference without tag or digest (they have fields of their own), on a
    registry named by its host (crane and kit would take a bare name for Docker Hub)."""
    parse_reference(text)
    if ImageRegexps.ANCHORED_NAME_REGEXP.fullmatch(text) is None:
        raise ValueError(f"{msg.OUTPUT_REPOSITORY} (got {text[:120]!r})")
    if not has_registry_host(text):
        raise ValueError(f"{msg.OUTPUT_REGISTRY_HOST} (got {text[:120]!r})")
    return text


def has_registry_host(name: str) -> bool:
    """distribution/reference's own test of a first component that names a registry."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


# The CEL twin of has_registry_host.
REGISTRY_HOST_RULE = (
    "self.contains('/') && (self.split('/')[0].contains('.') || self.split('/')[0].contains(':') "
    "|| self.split('/')[0] == 'localhost')"
)


def pattern_rule(pattern: str, message: str) -> dict[str, Any]:
    """A CEL `matches` rather than an OpenAPI `pattern`: the API server then answers with our message,
    not with the expression."""
    return cel(f"self.matches({cel_string(pattern)})", message)


ImageReference = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REFERENCE),
    AfterValidator(parse_reference),
    Field(json_schema_extra=cel_rules(pattern_rule(REFERENCE_PAT, msg.IMAGE_REFERENCE))),
]
AbsolutePath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096),
    AfterValidator(lambda value: canonical_path(value, msg.MODEL_PATH_ABSOLUTE)),
    Field(json_schema_extra=cel_rules(*canonical_path_rules(msg.MODEL_PATH_ABSOLUTE))),
]


def quantity_of(field: str) -> AfterValidator:
    """A quantity check whose message names the field."""
    return AfterValidator(lambda value: check_quantity(value, field))


QuantityText = Annotated[
    str, StringConstraints(max_length=64), Field(json_schema_extra=cel_rules(cel("isQuantity(self)", msg.QUANTITY)))
]


def is_within(path: str, directory: str) -> bool:
    """Whether a canonical absolute path is the directory or below it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")
