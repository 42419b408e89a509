"""The Kube port's own logic, with the client's API classes replaced by recorders: which call each
method makes (arguments as the client expects them), what it counts, and which errors become
Conflict, Refused, None or False. The e2e suite proves the same methods against a real API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import kubernetes
import pydantic
import pydantic_core
import pytest
from kubernetes.client.exceptions import ApiException

from finetune_operator.controller import kube as kube_module
from finetune_operator.controller.kube import Conflict, Kube, Refused, api_client_from_environment, event_body, refusal
from finetune_operator.observe.following import LogTail

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
OWNER = {
    "apiVersion": "finetune.aidaptiv.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "run", "namespace": "ns", "uid": "u-1"},
}


class Api:
    """Stands in for one of the client's API classes: records each call, answers what the test set."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.api_client = client
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.answers: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            answer = self.answers.get(name)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


class Port:
    """A Kube whose four API classes are recorders, and the operations it counted."""

    def __init__(self) -> None:
        self.counted: list[str] = []
        self.kube = Kube(kubernetes.client.ApiClient(), count=self.counted.append)
        client = self.kube.core.api_client
        self.core, self.batch, self.custom, self.extensions = Api(client), Api(client), Api(client), Api(client)
        self.kube.core, self.kube.batch, self.kube.custom, self.kube.extensions = (  # type: ignore[assignment]
            self.core,
            self.batch,
            self.custom,
            self.extensions,
        )


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def _error(status: int, message: str | None = None) -> ApiException:
    error = ApiException(status=status, reason=f"Reason{status}")
    error.body = None if message is None else json.dumps({"kind": "Status", "message": message})
    return error


class _Spec(pydantic.BaseModel):
    parallelism: int


class _Body(pydantic.BaseModel):
    spec: _Spec


@pydantic.validate_call
def _typed_create(namespace: str, body: _Body) -> None:
    """Checks its arguments as the client's generated methods do."""


def _validation_error() -> pydantic.ValidationError:
    try:
        _typed_create("ns", {"spec": {"parallelism": "many"}})  # type: ignore[arg-type]
    except pydantic.ValidationError as error:
        return error
    raise AssertionError("no validation error")


def test_the_client_is_shared_by_every_api_and_counting_is_optional() -> None:
    client = kubernetes.client.ApiClient()
    kube = Kube(client)
    assert [api.api_client for api in (kube.core, kube.batch, kube.custom, kube.extensions)] == [client] * 4
    assert kube._sync("anything", lambda a, b=0: a + b, 1, b=2) == 3


def test_from_environment_uses_the_environments_client(monkeypatch: pytest.MonkeyPatch) -> None:
    client = kubernetes.client.ApiClient()
    monkeypatch.setattr(kube_module, "api_client_from_environment", lambda: client)
    counted: list[str] = []
    kube = Kube.from_environment(count=counted.append)
    assert kube.core.api_client is client
    kube._sync("read_job", lambda: None)
    assert counted == ["read_job"]


def test_in_cluster_config_first_then_the_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[tuple[str, Any]] = []

    def in_cluster(client_configuration: Any) -> None:
        loaded.append(("in-cluster", client_configuration))
        raise kubernetes.config.ConfigException("not in a pod")

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", in_cluster)
    monkeypatch.setattr(
        kubernetes.config,
        "load_kube_config",
        lambda client_configuration: loaded.append(("kubeconfig", client_configuration)),
    )
    client = api_client_from_environment()
    assert [kind for kind, _ in loaded] == ["in-cluster", "kubeconfig"]
    assert loaded[0][1] is loaded[1][1] is client.configuration
    loaded.clear()
    monkeypatch.setattr(
        kubernetes.config, "load_incluster_config", lambda client_configuration: loaded.append(("in-cluster", None))
    )
    api_client_from_environment()
    assert loaded == [("in-cluster", None)]


@pytest.mark.parametrize(
    ("method", "api", "function", "operation"),
    [
        ("create_job", "batch", "create_namespaced_job", "create_job"),
        ("create_config_map", "core", "create_namespaced_config_map", "create_configmap"),
        ("create_service", "core", "create_namespaced_service", "create_service"),
    ],
)
def test_create_sends_the_manifest_to_its_namespace(method: str, api: str, function: str, operation: str) -> None:
    port = Port()
    recorder: Api = getattr(port, api)
    recorder.answers[function] = {"metadata": {"name": "run", "uid": "new"}}
    manifest = {"metadata": {"name": "run", "namespace": "ns"}}
    assert _run(getattr(port.kube, method)(manifest)) == {"metadata": {"name": "run", "uid": "new"}}
    assert recorder.calls == [(function, ("ns", manifest), {})]
    assert port.counted == [operation]


@pytest.mark.parametrize(
    ("error", "raised", "message"),
    [
        (_error(409, 'jobs.batch "run" already exists'), Conflict, 'jobs.batch "run" already exists'),
        (_error(400, "bad request body"), Refused, "bad request body"),
        (
            _error(422, 'Job.batch "run" is invalid: spec.completions'),
            Refused,
            'Job.batch "run" is invalid: spec.completions',
        ),
        (_error(422), Refused, "Reason422"),
        (
            _validation_error(),
            Refused,
            "spec.parallelism: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_create_errors_become_conflict_or_refused(error: Exception, raised: type[Exception], message: str) -> None:
    port = Port()
    port.batch.answers["create_namespaced_job"] = error
    with pytest.raises(raised) as caught:
        _run(port.kube.create_job({"metadata": {"name": "run", "namespace": "ns"}}))
    assert str(caught.value) == message
    assert type(caught.value) is raised


def test_a_refusal_by_the_clients_type_check_names_every_field() -> None:
    # Locations start with the argument's index, left out; a name quoted in backticks is given bare.
    error = pydantic_core.ValidationError.from_exception_data(
        "create_namespaced_job",
        [
            {"type": "missing", "loc": (1, "`spec`", "template"), "input": {}},
            {"type": "int_parsing", "loc": (1, "spec", "parallelism"), "input": "x"},
        ],
    )
    assert refusal(error) == (
        "spec.template: Field required; spec.parallelism: Input should be a valid integer, unable to parse string "
        "as an integer"
    )


def test_a_create_too_large_for_the_api_server_is_refused_for_good() -> None:
    """413 (the request over the API server's limit, e.g. a 6.7 MB ConfigMap) never passes on a retry."""
    port = Port()
    port.core.answers["create_namespaced_config_map"] = _error(413, "Request entity too large: limit is 3145728")
    with pytest.raises(Refused) as caught:
        _run(port.kube.create_config_map({"metadata": {"name": "c", "namespace": "ns"}}))
    assert str(caught.value) == "too large for the API server (413): Request entity too large: limit is 3145728"


@pytest.mark.parametrize("status", [403, 404, 500, 503])
def test_other_create_errors_are_raised_for_a_retry(status: int) -> None:
    port = Port()
    port.core.answers["create_namespaced_config_map"] = _error(status, "try again")
    with pytest.raises(ApiException) as caught:
        _run(port.kube.create_config_map({"metadata": {"name": "c", "namespace": "ns"}}))
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (json.dumps({"message": "the reason in words"}), "the reason in words"),
        (json.dumps({"message": ""}), "Unprocessable"),
        (json.dumps({"kind": "Status"}), "Unprocessable"),
        ("<html>not json</html>", "Unprocessable"),
        (None, "Unprocessable"),
    ],
)
def test_refusal_says_what_the_api_server_said(body: str | None, said: str) -> None:
    error = ApiException(status=422, reason="Unprocessable")
    error.body = body
    assert refusal(error) == said


@pytest.mark.parametrize(
    ("method", "api", "function", "operation"),
    [
        ("read_job", "batch", "read_namespaced_job", "read_job"),
        ("read_config_map", "core", "read_namespaced_config_map", "read_configmap"),
        ("read_service", "core", "read_namespaced_service", "read_service"),
    ],
)
def test_reads_give_the_object_or_none_when_missing(method: str, api: str, function: str, operation: str) -> None:
    port = Port()
    recorder: Api = getattr(port, api)
    recorder.answers[function] = {"metadata": {"name": "run"}}
    assert _run(getattr(port.kube, method)("ns", "run")) == {"metadata": {"name": "run"}}
    assert recorder.calls == [(function, ("run", "ns"), {})]
    assert port.counted == [operation]
    recorder.answers[function] = _error(404)
    assert _run(getattr(port.kube, method)("ns", "run")) is None
    recorder.answers[function] = _error(500)
    with pytest.raises(ApiException):
        _run(getattr(port.kube, method)("ns", "run"))


def test_delete_job_guards_by_uid_in_the_background() -> None:
    port = Port()
    assert _run(port.kube.delete_job("ns", "run", "u-1")) is True
    options = kubernetes.client.V1DeleteOptions(
        propagation_policy="Background", preconditions=kubernetes.client.V1Preconditions(uid="u-1")
    )
    assert port.batch.calls == [("delete_namespaced_job", ("run", "ns"), {"body": options})]
    assert port.counted == ["delete_job"]


@pytest.mark.parametrize(("status", "result"), [(404, False), (409, False)])
def test_delete_job_of_a_job_gone_or_replaced_is_false(status: int, result: bool) -> None:
    port = Port()
    port.batch.answers["delete_namespaced_job"] = _error(status)
    assert _run(port.kube.delete_job("ns", "run", "u-1")) is result


def test_delete_job_raises_other_errors() -> None:
    port = Port()
    port.batch.answers["delete_namespaced_job"] = _error(500)
    with pytest.raises(ApiException):
        _run(port.kube.delete_job("ns", "run", "u-1"))


@pytest.mark.parametrize(("suspend", "text"), [(True, "true"), (False, "false")])
def test_set_job_suspend_patches_the_flag_and_its_annotation(suspend: bool, text: str) -> None:
    port = Port()
    _run(port.kube.set_job_suspend("ns", "run", suspend))
    patch = {
        "metadata": {"annotations": {"finetune.aidaptiv.io/requested-suspend": text}},
        "spec": {"suspend": suspend},
    }
    assert port.batch.calls == [("patch_namespaced_job", ("run", "ns", patch), {})]
    assert port.counted == ["patch_job"]


def test_patch_status_goes_to_the_status_subresource() -> None:
    port = Port()
    _run(port.kube.patch_status("ns", "run", {"phase": "Running"}))
    assert port.custom.calls == [
        (
            "patch_namespaced_custom_object_status",
            ("finetune.aidaptiv.io", "v1alpha1", "ns", "finetunejobs", "run", {"status": {"phase": "Running"}}),
            {},
        )
    ]
    assert port.counted == ["patch_status"]


class _Response:
    """The urllib3 response the client hands out with _preload_content=False."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.released = False

    def release_conn(self) -> None:
        self.released = True


def test_read_log_reads_a_bounded_tail_of_one_container_as_bytes() -> None:
    port = Port()
    answer = _Response(b"line\n")
    port.core.answers["read_namespaced_pod_log"] = answer
    assert _run(port.kube.read_log("ns", "pod-0", "trainer", 400, 1024)) == LogTail("line\n", cut=False)
    assert port.core.calls == [
        (
            "read_namespaced_pod_log",
            ("pod-0", "ns"),
            {"_preload_content": False, "container": "trainer", "tail_lines": 400, "limit_bytes": 1024},
        )
    ]
    assert port.counted == ["read_pod_log"]
    assert answer.released


def test_a_log_that_is_no_utf8_or_cut_inside_a_character_is_still_read() -> None:
    """The client's own decoding is strict: a latin-1 byte raised UnicodeDecodeError (issue 20 #10)."""
    port = Port()
    port.core.answers["read_namespaced_pod_log"] = _Response(b"caf\xe9\n")
    assert _run(port.kube.read_log("ns", "pod-0", "trainer", 400, 1024)) == LogTail("caf\ufffd\n", cut=False)
    bar = "Saving: " + "\u2588" * 10
    cut = bar.encode()[:-1]  # the byte limit ends inside the last character
    port.core.answers["read_namespaced_pod_log"] = _Response(cut)
    assert _run(port.kube.read_log("ns", "pod-0", "trainer", 400, len(cut))) == LogTail(bar[:-1], cut=True)


def test_event_body_is_a_core_event_about_the_finetunejob() -> None:
    assert event_body(OWNER, "Warning", "PodCreateFailed", "m" * 1100, NOW) == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "run.", "namespace": "ns"},
        "involvedObject": {
            "apiVersion": "finetune.aidaptiv.io/v1alpha1",
            "kind": "FineTuneJob",
            "name": "run",
            "namespace": "ns",
            "uid": "u-1",
        },
        "type": "Warning",
        "reason": "PodCreateFailed",
        "message": "m" * 1024,
        "source": {"component": "finetune-operator"},
        "firstTimestamp": "2026-11-28T12:00:00Z",
        "lastTimestamp": "2026-11-28T12:00:00Z",
        "count": 1,
    }


def test_post_event_with_its_own_time_or_now() -> None:
    port = Port()
    _run(port.kube.post_event(OWNER, "Normal", "JobCreated", "made", NOW))
    assert port.core.calls == [
        ("create_namespaced_event", ("ns", event_body(OWNER, "Normal", "JobCreated", "made", NOW)), {})
    ]
    assert port.counted == ["create_event"]
    before = datetime.now(UTC).replace(microsecond=0)
    _run(port.kube.post_event(OWNER, "Normal", "JobCreated", "made"))
    sent = datetime.fromisoformat(port.core.calls[1][1][1]["firstTimestamp"])
    assert before <= sent <= datetime.now(UTC)


def test_a_named_event_is_sent_with_its_name_and_one_stored_already_counts_as_posted() -> None:
    port = Port()
    named = event_body(OWNER, "Normal", "JobCreated", "made", NOW, "run.0123456789abcdef")
    assert named["metadata"] == {"name": "run.0123456789abcdef", "namespace": "ns"}
    assert {k: v for k, v in named.items() if k != "metadata"} == {
        k: v for k, v in event_body(OWNER, "Normal", "JobCreated", "made", NOW).items() if k != "metadata"
    }
    port.core.answers["create_namespaced_event"] = _error(409)
    _run(port.kube.post_event(OWNER, "Normal", "JobCreated", "made", NOW, "run.0123456789abcdef"))
    assert port.core.calls == [("create_namespaced_event", ("ns", named), {})]
    # Without a name, a 409 is not ours to explain; other errors are raised either way.
    with pytest.raises(ApiException):
        _run(port.kube.post_event(OWNER, "Normal", "JobCreated", "made", NOW))
    port.core.answers["create_namespaced_event"] = _error(500)
    with pytest.raises(ApiException):
        _run(port.kube.post_event(OWNER, "Normal", "JobCreated", "made", NOW, "run.0123456789abcdef"))


def test_list_events_selects_by_object_and_reason() -> None:
    port = Port()
    port.core.answers["list_namespaced_event"] = SimpleNamespace(items=[{"reason": "FailedCreate", "message": "quota"}])
    assert _run(port.kube.list_events("ns", "job-uid", "FailedCreate")) == [
        {"reason": "FailedCreate", "message": "quota"}
    ]
    assert port.core.calls == [
        ("list_namespaced_event", ("ns",), {"field_selector": "involvedObject.uid=job-uid,reason=FailedCreate"})
    ]
    assert port.counted == ["list_events"]


def test_read_peers_of_a_cluster_or_a_namespace() -> None:
    port = Port()
    port.custom.answers["get_cluster_custom_object"] = {"status": {"me": {"priority": 1}}}
    port.custom.answers["get_namespaced_custom_object"] = {"status": {"you": {"priority": 2}}}
    assert _run(port.kube.read_peers("operator", None)) == {"me": {"priority": 1}}
    assert _run(port.kube.read_peers("operator", "ns")) == {"you": {"priority": 2}}
    assert port.custom.calls == [
        ("get_cluster_custom_object", ("kopf.dev", "v1", "clusterkopfpeerings", "operator"), {}),
        ("get_namespaced_custom_object", ("kopf.dev", "v1", "ns", "kopfpeerings", "operator"), {}),
    ]
    assert port.counted == ["read_peering", "read_peering"]


def test_read_peers_of_a_missing_or_empty_peering_is_empty() -> None:
    port = Port()
    port.custom.answers["get_cluster_custom_object"] = _error(404)
    port.custom.answers["get_namespaced_custom_object"] = {"metadata": {"name": "operator"}}
    assert _run(port.kube.read_peers("operator", None)) == {}
    assert _run(port.kube.read_peers("operator", "ns")) == {}


def test_delete_finetunejob_guards_by_uid_and_ignores_one_gone() -> None:
    port = Port()
    _run(port.kube.delete_finetunejob("ns", "run", "u-1"))
    options = kubernetes.client.V1DeleteOptions(preconditions=kubernetes.client.V1Preconditions(uid="u-1"))
    assert port.custom.calls == [
        (
            "delete_namespaced_custom_object",
            ("finetune.aidaptiv.io", "v1alpha1", "ns", "finetunejobs", "run"),
            {"body": options},
        )
    ]
    assert port.counted == ["delete_finetunejob"]
    for status in (404, 409):
        port.custom.answers["delete_namespaced_custom_object"] = _error(status)
        _run(port.kube.delete_finetunejob("ns", "run", "u-1"))
    port.custom.answers["delete_namespaced_custom_object"] = _error(500)
    with pytest.raises(ApiException):
        _run(port.kube.delete_finetunejob("ns", "run", "u-1"))


def _resources(*names: str) -> SimpleNamespace:
    return SimpleNamespace(resources=[SimpleNamespace(name=name) for name in names])


def test_finetunejobs_served_asks_discovery() -> None:
    port = Port()
    port.custom.answers["get_api_resources"] = _resources("finetunejobs/status", "finetunejobs")
    assert port.kube.finetunejobs_served() is True
    assert port.custom.calls == [("get_api_resources", ("finetune.aidaptiv.io", "v1alpha1"), {})]
    assert port.counted == ["discover"]
    port.custom.answers["get_api_resources"] = _resources("finetunejobs/status", "others")
    assert port.kube.finetunejobs_served() is False
    port.custom.answers["get_api_resources"] = _error(404)
    assert port.kube.finetunejobs_served() is False
    port.custom.answers["get_api_resources"] = _error(403)
    with pytest.raises(ApiException):
        port.kube.finetunejobs_served()


def test_install_crd_creates_a_missing_one() -> None:
    port = Port()
    wanted = {"metadata": {"name": "finetunejobs.finetune.aidaptiv.io"}, "spec": {}}
    port.extensions.answers["read_custom_resource_definition"] = _error(404)
    assert port.kube.install_crd(wanted) == "created"
    assert port.extensions.calls == [
        ("read_custom_resource_definition", ("finetunejobs.finetune.aidaptiv.io",), {}),
        ("create_custom_resource_definition", (wanted,), {}),
    ]
    assert port.counted == ["read_crd", "create_crd"]


def test_install_crd_replaces_an_existing_one_at_its_version() -> None:
    port = Port()
    wanted = {"metadata": {"name": "finetunejobs.finetune.aidaptiv.io"}, "spec": {}}
    port.extensions.answers["read_custom_resource_definition"] = SimpleNamespace(
        metadata=SimpleNamespace(resource_version="42")
    )
    assert port.kube.install_crd(wanted) == "updated"
    replaced = {"metadata": {"name": "finetunejobs.finetune.aidaptiv.io", "resourceVersion": "42"}, "spec": {}}
    assert port.extensions.calls[1] == (
        "replace_custom_resource_definition",
        ("finetunejobs.finetune.aidaptiv.io", replaced),
        {},
    )
    assert port.counted == ["read_crd", "replace_crd"]
    assert wanted == {"metadata": {"name": "finetunejobs.finetune.aidaptiv.io"}, "spec": {}}  # left as it was
    port.extensions.answers["read_custom_resource_definition"] = _error(403)
    with pytest.raises(ApiException):
        port.kube.install_crd(wanted)


def _terminating() -> ApiException:
    """The API server's answer to a create in a namespace being deleted (as a v1.36 API server writes it)."""
    error = ApiException(status=403, reason="Forbidden")
    cause = {
        "reason": "NamespaceTerminating",
        "message": "namespace ns is being terminated",
        "field": "metadata.namespace",
    }
    message = (
        'jobs.batch "run" is forbidden: unable to create new content in namespace ns because it is being terminated'
    )
    error.body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": "Forbidden",
            "details": {"causes": [cause]},
            "code": 403,
        }
    )
    return error


def test_a_create_or_event_in_a_namespace_being_deleted_is_told_apart_from_a_refusal_of_rights() -> None:
    """Found by the image's e2e (an operator started as a namespace of an earlier test went): each pass
    and Event there raised Forbidden, was logged as such and retried until the namespace was gone."""
    port = Port()
    port.batch.answers["create_namespaced_job"] = _terminating()
    with pytest.raises(kube_module.NamespaceTerminating):
        _run(port.kube.create_job({"metadata": {"name": "run", "namespace": "ns"}}))
    port.core.answers["create_namespaced_event"] = _terminating()
    with pytest.raises(kube_module.NamespaceTerminating):
        _run(port.kube.post_event(OWNER, "Normal", "JobCreated", "made", NOW, "run.0123456789abcdef"))
    # Any other 403 (RBAC) is raised as it is, and retried.
    port.core.answers["create_namespaced_config_map"] = _error(403, "configmaps is forbidden: User cannot create")
    with pytest.raises(ApiException):
        _run(port.kube.create_config_map({"metadata": {"name": "c", "namespace": "ns"}}))
