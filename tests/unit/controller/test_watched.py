"""The controller's own index of the children (controller/watched.py), its listing at a start, and
the Kube port's paginated list behind it."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from finetune_operator.api.base import LABEL_NAME
from finetune_operator.controller.watched import ChildIndex, Watched, job_entry, owner_key, pod_entry
from tests.unit.controller.fakes import World
from tests.unit.controller.test_kube import Port


def _child(uid: str, owner: str | None, namespace: str = "ns") -> dict[str, Any]:
    labels = {} if owner is None else {LABEL_NAME: owner}
    return {"metadata": {"name": f"c-{uid}", "namespace": namespace, "uid": uid, "labels": labels}}


def test_a_child_is_kept_once_by_uid_under_its_finetunejob() -> None:
    index = ChildIndex()
    index.put(("ns", "a"), "1", {"v": 1})
    index.put(("ns", "a"), "1", {"v": 2})  # a newer delivery replaces the older
    index.put(("ns", "a"), "2", {"v": 3})
    index.put(("other", "a"), "3", {"v": 4})
    assert dict(index) == {("ns", "a"): [{"v": 2}, {"v": 3}], ("other", "a"): [{"v": 4}]}
    assert len(index) == 2 and index.knows("3") and not index.knows("4")


def test_a_child_whose_label_moves_leaves_its_old_finetunejob_and_an_empty_one_costs_nothing() -> None:
    index = ChildIndex()
    index.put(("ns", "a"), "1", {"v": 1})
    index.put(("ns", "b"), "1", {"v": 2})
    assert dict(index) == {("ns", "b"): [{"v": 2}]}
    index.drop("1")
    index.drop("1")  # dropped twice: nothing happens
    assert dict(index) == {} and not index.knows("1")


def test_replace_all_forgets_what_the_list_no_longer_shows() -> None:
    index = ChildIndex()
    index.put(("ns", "gone"), "1", {"v": 1})
    index.replace_all([(("ns", "a"), "2", {"v": 2})])
    assert dict(index) == {("ns", "a"): [{"v": 2}]} and not index.knows("1")


def test_owner_key_and_entries_read_the_label_and_slim_the_child() -> None:
    assert owner_key(_child("1", None)) is None
    assert owner_key(_child("1", "run", "team")) == ("team", "run")
    job = {**_child("j", "run"), "spec": {"suspend": True, "template": {"big": "x" * 100}}, "status": {}}
    key, uid, slim = job_entry(job)
    assert (key, uid, slim["spec"]) == (("ns", "run"), "j", {"suspend": True, "parallelism": None, "completions": None})
    pod = {**_child("p", "run"), "spec": {"containers": []}, "status": {"phase": "Running"}}
    key, uid, slim = pod_entry(pod)
    assert (key, uid, slim["status"]["phase"], "spec" in slim) == (("ns", "run"), "p", "Running", False)


def test_start_lists_the_children_of_each_watched_namespace_before_any_pass() -> None:
    world = World()
    for kind, namespace, uid, owner in [
        ("Job", "a", "j1", "x"),
        ("Job", "b", "j2", "y"),
        ("Job", "c", "j3", "z"),  # not watched
        ("Job", "a", "j4", None),  # not ours
        ("Pod", "b", "p1", "y"),
    ]:
        world.kube.objects[(kind, namespace, uid)] = _child(uid, owner, namespace)
    world.controller.namespaces = ("a", "b")
    watched = world.controller.watched

    async def start() -> None:
        await world.controller.start()
        await world.controller.stop()

    world.run(start())
    assert sorted(dict(watched.jobs)) == [("a", "x"), ("b", "y")]
    assert sorted(dict(watched.pods)) == [("b", "y")]
    assert world.kube.call_order == ["list_jobs", "list_pods", "list_jobs", "list_pods"]


def test_a_standby_replica_lists_the_children_when_it_becomes_the_active_one() -> None:
    from finetune_operator.controller.controller import Peering

    world = World(peering=Peering("p", ("ns",), "me", priority=1, lifetime=30))
    world.kube.peers = {"other": {"priority": 9, "lastseen": world.clock.now().isoformat(), "lifetime": 30}}
    world.kube.objects[("Job", "ns", "j")] = _child("j", "run")

    async def scenario() -> None:
        await world.controller.start()
        await world.controller.stop()
        assert world.kube.calls["list_jobs"] == 0  # standing by: nothing listed
        world.kube.peers = {}
        world.kube.fail_next("list_jobs", RuntimeError("the API is away"))
        await world.controller.check_active()
        assert world.controller.active is False  # not active before its children are known
        await world.controller.check_active()

    world.run(scenario())
    assert world.controller.active is True
    assert list(world.controller.watched.jobs) == [("ns", "run")]


class _Pages:
    """A list call answering page after page (as `_preload_content=False` does: raw JSON)."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> SimpleNamespace:
        self.calls.append((args, kwargs))
        return SimpleNamespace(data=json.dumps(self.pages.pop(0)).encode())


def test_list_labelled_reads_page_after_page_and_counts_each() -> None:
    port = Port()
    pages = _Pages(
        [
            {"items": [_child("1", "a")], "metadata": {"continue": "next"}},
            {"items": [_child("2", "b")], "metadata": {}},
        ]
    )
    port.batch.list_namespaced_job = pages  # type: ignore[attr-defined]
    found = asyncio.run(port.kube.list_labelled("jobs", "ns", LABEL_NAME, lambda item: item["metadata"]["uid"]))
    assert found == ["1", "2"]
    assert port.counted == ["list_jobs", "list_jobs"]
    assert [args for args, _ in pages.calls] == [("ns",), ("ns",)]
    assert [kwargs["_continue"] for _, kwargs in pages.calls] == [None, "next"]
    assert {kwargs["label_selector"] for _, kwargs in pages.calls} == {LABEL_NAME}
    assert {kwargs["limit"] for _, kwargs in pages.calls} == {200}


def test_list_labelled_everywhere_uses_the_all_namespaces_call() -> None:
    port = Port()
    pages = _Pages([{"items": []}])
    port.core.list_pod_for_all_namespaces = pages  # type: ignore[attr-defined]
    assert asyncio.run(port.kube.list_labelled("pods", None, LABEL_NAME, lambda item: item)) == []
    assert [args for args, _ in pages.calls] == [()]
    assert isinstance(Watched().jobs, ChildIndex)
