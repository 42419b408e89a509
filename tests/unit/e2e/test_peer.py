"""The pure parts of the peer (e2e/peer.py) and of the benchmark's request counting: the managers'
configurations, their webhooks by URL, the runtime of 1 ai100 (no process, no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.contenders import FTJ, TRAINJOB, OperatorContender, PeerContender, _split_labels, delta
from benchmarks.side_by_side import per_object

from e2e import build_toolchain, peer

PORTS = peer.Ports(webhook=9443, health=8081, metrics=8080)


def _hook(name: str, path: str, group: str, resource: str) -> dict[str, Any]:
    return {
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": path}},
        "failurePolicy": "Fail",
        "name": name,
        "rules": [{"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [resource]}],
        "sideEffects": "None",
    }


def test_jobset_webhooks_by_url_its_pod_ones_only_for_pods_of_jobsets() -> None:
    shipped = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mutating-webhook-configuration"},
            "webhooks": [
                _hook("mjobset.kb.io", "/mutate-jobset", "jobset.x-k8s.io", "jobsets"),
                _hook("mpod.kb.io", "/mutate--v1-pod", "", "pods"),
            ],
        }
    ]
    (made,) = peer.webhook_configurations("jobset", shipped, 9443, "Q0E=")
    assert made["metadata"] == {"name": "fto-e2e-peer-jobset-mutating"}
    jobsets, pods = made["webhooks"]
    assert jobsets["clientConfig"] == {"url": "https://127.0.0.1:9443/mutate-jobset", "caBundle": "Q0E="}
    assert "objectSelector" not in jobsets
    assert pods["clientConfig"] == {"url": "https://127.0.0.1:9443/mutate--v1-pod", "caBundle": "Q0E="}
    assert pods["objectSelector"] == {
        "matchExpressions": [{"key": "jobset.sigs.k8s.io/jobset-name", "operator": "Exists"}]
    }
    assert shipped[0]["webhooks"][1]["clientConfig"]["service"]["path"] == "/mutate--v1-pod"  # not changed


def test_trainer_webhooks_keep_only_trainers_kinds() -> None:
    shipped = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "validating-webhook-configuration"},
            "webhooks": [
                _hook("validator.trainjob", "/validate-trainjob", "trainer.kubeflow.org", "trainjobs"),
                _hook("someone-elses", "/validate-pod", "", "pods"),
            ],
        }
    ]
    (made,) = peer.webhook_configurations("trainer", shipped, 9444, "Q0E=")
    assert made["metadata"]["name"] == "fto-e2e-peer-trainer-validating"
    assert [hook["name"] for hook in made["webhooks"]] == ["validator.trainjob"]


def test_configurations_listen_on_localhost_with_leader_election_and_own_certificates_off() -> None:
    assert peer.jobset_config(PORTS, Path("/w/certs")) == {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": 9443, "certDir": "/w/certs"},
        "health": {"healthProbeBindAddress": "127.0.0.1:8081"},
        "metrics": {"bindAddress": "127.0.0.1:8080"},
    }
    assert peer.trainer_config(PORTS) == {
        "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": 9443},
        "health": {"healthProbeBindAddress": "127.0.0.1:8081"},
        "metrics": {"bindAddress": "127.0.0.1:8080", "secureServing": False},
    }


def test_the_runtime_asks_for_one_ai100_and_a_trainjob_refers_to_it() -> None:
    runtime = peer.cluster_training_runtime()
    (replicated,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    (container,) = replicated["template"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["phison.com/ai100"] == "1"
    assert container["resources"]["requests"]["phison.com/ai100"] == "1"
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}
    assert peer.trainjob("a", suspend=True)["spec"] == {"runtimeRef": {"name": "fto-ai100"}, "suspend": True}
    assert peer.trainjob("b")["spec"] == {"runtimeRef": {"name": "fto-ai100"}}


def test_the_peer_is_built_and_its_files_copied_by_the_toolchain() -> None:
    binaries = {t.binary: t for t in build_toolchain.targets()}
    assert binaries["jobset"].package == "sigs.k8s.io/jobset"
    assert binaries["jobset"].ldflags == ("-X sigs.k8s.io/jobset/pkg/version.GitVersion=v0.11.1",)
    trainer = binaries["trainer-controller-manager"]
    assert trainer.package == "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager"
    assert {"jobset", "trainer-controller-manager"} <= set(build_toolchain.BINARIES)
    assert build_toolchain.peer_dir("trainer").name == "trainer-v2.2.0"
    assert build_toolchain.PEER_FILES["jobset"] == (
        "config/components/crd/bases",
        "config/components/webhook/manifests.yaml",
    )


def test_request_labels_split_outside_quotes_only() -> None:
    assert _split_labels('verb="LIST",resource="jobs",x="a,b"') == ['verb="LIST"', 'resource="jobs"', 'x="a,b"']


def test_requests_per_object_leave_out_the_benchmarks_own_creates() -> None:
    before = {"POST trainjobs": 5.0, "POST jobs": 1.0}
    after = {"POST trainjobs": 15.0, "POST jobs": 21.0, "GET jobsets": 5.0, "PATCH trainjobs/status": 10.0}
    counted = per_object(delta(after, before), PeerContender.__new__(PeerContender), 10)
    assert counted == {
        "total": 3.5,
        "writes": 3.0,
        "by_request": {"POST jobs": 2.0, "GET jobsets": 0.5, "PATCH trainjobs/status": 1.0},
    }
    assert (OperatorContender.kind, PeerContender.kind) == (FTJ, TRAINJOB)
