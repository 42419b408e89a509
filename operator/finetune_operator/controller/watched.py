"""What the watches delivered of the FineTuneJobs' children (Jobs, pods), by (namespace, FineTuneJob name).

Plain dicts, not kopf's indices: while kopf fills its indices at a start it holds every object's
handlers behind one condition that each newly indexed object notifies (kopf 1.45, `ToggleSet`), which
is quadratic in the objects listed: with 1,000 live FineTuneJobs and their Jobs no pass ran for 17 s
after a restart. These are filled at start by one paginated list of the labelled children, before any
pass runs (a pass never sees a partial view and never makes a Job that exists), and kept by the
watches' events from then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from finetune_operator.api.base import LABEL_NAME
from finetune_operator.controller.ports import KubePort
from finetune_operator.observe.pods import slim_job, slim_pod

Key = tuple[str, str]


class ChildIndex(Mapping[Key, list[dict[str, Any]]]):
    """Slim children by their FineTuneJob's (namespace, name); each child once, by uid."""

    def __init__(self) -> None:
        self._by_owner: dict[Key, dict[str, dict[str, Any]]] = {}
        self._owner_of: dict[str, Key] = {}

    def __getitem__(self, key: Key) -> list[dict[str, Any]]:
        return list(self._by_owner[key].values())

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_owner)

    def __len__(self) -> int:
        return len(self._by_owner)

    def get(self, key: Key, default: Any = None) -> Any:
        """(Mapping's own get raises and catches a KeyError for every FineTuneJob without pods.)"""
        children = self._by_owner.get(key)
        return default if children is None else list(children.values())

    def knows(self, uid: str) -> bool:
        return uid in self._owner_of

    def put(self, key: Key, uid: str, child: dict[str, Any]) -> None:
        """The child as last delivered; a child whose label moved to another FineTuneJob leaves the old one."""
        if self._owner_of.get(uid, key) != key:
            self.drop(uid)
        self._by_owner.setdefault(key, {})[uid] = child
        self._owner_of[uid] = key

    def drop(self, uid: str) -> None:
        key = self._owner_of.pop(uid, None)
        if key is None:
            return
        children = self._by_owner[key]
        children.pop(uid, None)
        if not children:
            del self._by_owner[key]  # a FineTuneJob without children costs nothing here

    def replace_all(self, children: Iterable[tuple[Key, str, dict[str, Any]]]) -> None:
        """Everything as one list shows it (at a start, or when this replica becomes the active one)."""
        self._by_owner, self._owner_of = {}, {}
        for key, uid, child in children:
            self.put(key, uid, child)


def owner_key(body: Mapping[str, Any]) -> Key | None:
    """The (namespace, FineTuneJob name) a child's label names; None for an unlabelled object."""
    metadata = body["metadata"]
    owner = (metadata.get("labels") or {}).get(LABEL_NAME)
    return None if owner is None else (metadata["namespace"], owner)


def job_entry(body: dict[str, Any]) -> tuple[Key, str, dict[str, Any]]:
    key = owner_key(body)
    assert key is not None, "listed by its label"
    return key, body["metadata"]["uid"], slim_job(body)


def pod_entry(body: dict[str, Any]) -> tuple[Key, str, dict[str, Any]]:
    key = owner_key(body)
    assert key is not None, "listed by its label"
    return key, body["metadata"]["uid"], slim_pod(body)


class Watched:
    """The Jobs and pods of FineTuneJobs, as listed at a start and kept by the watches."""

    def __init__(self) -> None:
        self.jobs = ChildIndex()
        self.pods = ChildIndex()

    async def list_all(self, kube: KubePort, namespaces: tuple[str, ...]) -> None:
        jobs: list[tuple[Key, str, dict[str, Any]]] = []
        pods: list[tuple[Key, str, dict[str, Any]]] = []
        for namespace in namespaces or (None,):
            jobs += await kube.list_labelled("jobs", namespace, LABEL_NAME, job_entry)
            pods += await kube.list_labelled("pods", namespace, LABEL_NAME, pod_entry)
        self.jobs.replace_all(jobs)
        self.pods.replace_all(pods)
