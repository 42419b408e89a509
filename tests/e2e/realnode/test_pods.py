"""Plain pods on the real node (not through the operator): the pieces a training pod is made of, run
by the kubelet in real containers, and what the node's network allows."""

from __future__ import annotations

import json
import textwrap

from e2e import localcluster as lc
from e2e import realnode
from tests.e2e.realnode.nodes import RealNode, container_state, describe_pod, logs, on_real_node, pod

AI100 = "phison.com/ai100"
VGPU = "otterscale.com/vgpu"
VGPUMEM = "otterscale.com/vgpumem"


def _wait_pod(
    cluster: lc.Cluster, namespace: str, name: str, phases: tuple[str, ...] = ("Succeeded", "Failed")
) -> dict:
    return cluster.wait_for(
        lambda: (
            (p := cluster.get_json("pod", name, "-n", namespace)) and p.get("status", {}).get("phase") in phases and p
        ),
        what=f"pod {namespace}/{name} {'/'.join(phases)}",
        timeout=120,
        state=lambda: describe_pod(cluster, namespace, name),
    )


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def test_a_pod_with_the_training_pods_features_runs_for_real(
    cluster: lc.Cluster, namespace: str, real_node: RealNode
) -> None:
    """Init container, emptyDir, ConfigMap volume, memory-backed /dev/shm with a size, read-only root,
    a non-root uid, no capabilities, seccomp RuntimeDefault, a termination message; `kubectl logs`."""
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting"}, "data": {"greeting.txt": "hi"}},
        namespace,
    )
    main = textwrap.dedent(
        """\
        id
        cat /work/greeting.txt; echo
        grep -E '^(CapEff|Seccomp):' /proc/self/status
        touch /written-to-root 2>&1 || echo "root is read-only"
        df -k /dev/shm | tail -n 1 | awk '{print "shm kB " $2}'
        echo "the summary" > /dev/termination-log
        """
    )
    manifest = pod(
        "features",
        real_node,
        main,
        securityContext={"runAsUser": 1000, "runAsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        container={
            "volumeMounts": [{"name": "work", "mountPath": "/work"}, {"name": "dshm", "mountPath": "/dev/shm"}],
            "securityContext": RESTRICTED,
            "terminationMessagePath": "/dev/termination-log",
        },
        initContainers=[
            {
                "name": "init",
                "image": real_node.trainer_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", "cp /config/greeting.txt /work/ && echo init copied"],
                "volumeMounts": [
                    {"name": "work", "mountPath": "/work"},
                    {"name": "config", "mountPath": "/config", "readOnly": True},
                ],
                "securityContext": RESTRICTED,
            }
        ],
        volumes=[
            {"name": "work", "emptyDir": {}},
            {"name": "config", "configMap": {"name": "greeting"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    )
    cluster.apply(manifest, namespace)
    found = _wait_pod(cluster, namespace, "features")
    assert found["status"]["phase"] == "Succeeded", describe_pod(cluster, namespace, "features")
    assert found["spec"]["nodeName"] == real_node.name
    assert logs(cluster, namespace, "features", "init") == "init copied\n"
    assert logs(cluster, namespace, "features", "main").splitlines() == [
        "uid=1000 gid=1000 groups=1000",
        "hi",
        "CapEff:\t0000000000000000",
        "Seccomp:\t2",
        "touch: cannot touch '/written-to-root': Read-only file system",
        "root is read-only",
        "shm kB 65536",
    ]
    terminated = container_state(found)["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (0, "Completed", "the summary\n")


def test_kubectl_exec_reaches_a_running_container(cluster: lc.Cluster, namespace: str, real_node: RealNode) -> None:
    cluster.apply(pod("sleeper", real_node, "echo started; exec sleep 600"), namespace)
    _wait_pod(cluster, namespace, "sleeper", ("Running",))
    done = cluster.kubectl("exec", "-n", namespace, "sleeper", "--", "/bin/sh", "-c", "echo from inside $(hostname)")
    assert done.stdout == "from inside sleeper\n"
    failed = cluster.kubectl("exec", "-n", namespace, "sleeper", "--", "/bin/sh", "-c", "exit 7", check=False)
    assert failed.returncode == 7


def test_indexed_job_pods_find_each_other_through_the_headless_service(
    cluster: lc.Cluster, namespace: str, real_node: RealNode
) -> None:
    """Two pods of an Indexed Job resolve each other's names through CoreDNS and talk over TCP."""
    program = textwrap.dedent(
        """\
        import os, socket, sys, time
        index = int(os.environ["JOB_COMPLETION_INDEX"])
        me, peer = f"peers-{index}.mesh", f"peers-{1 - index}.mesh"
        def resolve(name):
            for _ in range(300):
                try:
                    return socket.getaddrinfo(name, 7000, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
                except OSError:
                    time.sleep(0.2)
            sys.exit(f"{name} never resolved")
        resolve(me); print(f"{peer} resolved")
        if index == 0:
            server = socket.create_server(("0.0.0.0", 7000))
            server.settimeout(60)
            conn, _ = server.accept()
            print("0 got:", conn.makefile().readline().strip())
            conn.sendall(b"hello from 0\\n")
        else:
            address = resolve(peer)
            for _ in range(300):
                try:
                    conn = socket.create_connection((address, 7000), timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            conn.sendall(b"hello from 1\\n")
            print("1 got:", conn.makefile().readline().strip())
        """
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mesh"},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"job-name": "peers"},
            "ports": [{"name": "talk", "port": 7000}],
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "peers"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "spec": on_real_node(
                    {
                        "subdomain": "mesh",
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": real_node.trainer_image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python3", "-c", program],
                            }
                        ],
                    }
                )
            },
        },
    }
    cluster.apply([service, job], namespace)
    assert cluster.wait_job_finished(namespace, "peers", timeout=180) == "Complete", cluster.namespace_state(namespace)
    by_index = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p["metadata"]["name"]
        for p in cluster.pods(namespace, "job-name=peers")
    }
    assert logs(cluster, namespace, by_index["0"]) == "peers-1.mesh resolved\n0 got: hello from 1\n"
    assert logs(cluster, namespace, by_index["1"]) == "peers-0.mesh resolved\n1 got: hello from 0\n"


def test_the_device_plugin_allocates_devices_and_the_nvme_mount(
    cluster: lc.Cluster, namespace: str, real_node: RealNode
) -> None:
    resources = {AI100: "2", VGPU: "1", VGPUMEM: "1024"}
    script = (
        'echo "ai100=$FTO_DEVICES_PHISON_COM_AI100"; echo "vgpu=$FTO_DEVICES_OTTERSCALE_COM_VGPU"; '
        "touch /mnt/nvme0/written && echo nvme writable"
    )
    manifest = pod("devices", real_node, script, container={"resources": {"requests": resources, "limits": resources}})
    cluster.apply(manifest, namespace)
    found = _wait_pod(cluster, namespace, "devices")
    assert found["status"]["phase"] == "Succeeded", describe_pod(cluster, namespace, "devices")
    lines = logs(cluster, namespace, "devices").splitlines()
    ai100 = lines[0].removeprefix("ai100=").split(",")
    vgpu = lines[1].removeprefix("vgpu=").split(",")
    assert len(set(ai100)) == 2 and set(ai100) <= {f"ai100-{i}" for i in range(4)}, lines
    assert len(vgpu) == 1 and vgpu[0] in {f"vgpu-{i}" for i in range(8)}, lines
    assert lines[2:] == ["nvme writable"]
    # The swap space is the first allocated card's own SSD.
    assert (real_node.root / "nvme0" / ai100[0] / "written").is_file()


def test_each_ai100_brings_its_own_nvme_swap_space(cluster: lc.Cluster, namespace: str, real_node: RealNode) -> None:
    """Two trainers on one node (two ranks of a gang, or two FineTuneJobs) must not share /mnt/nvme0:
    the trainer names its swap directory after its pid, and pids in two containers are alike, so a
    shared one let one rank remove the other's swap space under it (a gang retry failed with exit 1)."""
    one = {AI100: "1"}

    def container(name: str) -> dict:
        mine = f"/mnt/nvme0/{namespace}-{name}"
        script = f'touch {mine}; sleep 3; ls /mnt/nvme0; echo "device=$FTO_DEVICES_PHISON_COM_AI100"'
        return {
            "name": name,
            "image": real_node.trainer_image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", script],
            "resources": {"requests": one, "limits": one},
        }

    manifest = pod("pair", real_node, "true")
    manifest["spec"]["containers"] = [container("a"), container("b")]
    cluster.apply(manifest, namespace)
    found = _wait_pod(cluster, namespace, "pair")
    assert found["status"]["phase"] == "Succeeded", describe_pod(cluster, namespace, "pair")
    devices = set()
    for name, other in (("a", "b"), ("b", "a")):
        seen = cluster.kubectl("logs", "-n", namespace, "pair", "-c", name).stdout.splitlines()
        assert f"{namespace}-{name}" in seen and f"{namespace}-{other}" not in seen, (name, seen)
        device = seen[-1].removeprefix("device=")
        assert (real_node.root / "nvme0" / device / f"{namespace}-{name}").is_file(), seen
        devices.add(device)
    assert len(devices) == 2, devices


def test_more_devices_than_the_node_has_stay_pending(cluster: lc.Cluster, namespace: str, real_node: RealNode) -> None:
    resources = {AI100: "5"}
    cluster.apply(
        pod("greedy", real_node, "true", container={"resources": {"requests": resources, "limits": resources}}),
        namespace,
    )

    def unschedulable() -> bool:
        found = cluster.get_json("pod", "greedy", "-n", namespace) or {}
        return any(c.get("reason") == "Unschedulable" for c in found.get("status", {}).get("conditions", []))

    cluster.wait_for(unschedulable, what="pod greedy Unschedulable", timeout=60)


def test_pods_reach_cluster_names_and_nothing_off_this_host(
    cluster: lc.Cluster, namespace: str, real_node: RealNode
) -> None:
    """No default route in a pod (only the bridge's /24, and the Service range through kube-proxy's
    namespace, whose only route is that /24 again), cluster names resolve through the node's CoreDNS,
    any other name is refused by it (it forwards nothing)."""
    cluster.apply(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "named"}, "spec": {"ports": [{"port": 80}]}},
        namespace,
    )
    service_ip = cluster.get_json("service", "named", "-n", namespace)["spec"]["clusterIP"]
    program = textwrap.dedent(
        """\
        import json, socket, struct
        routes = [line.split()[:3] for line in open("/proc/net/route").read().splitlines()[1:]]
        nameserver = next(l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver"))
        def lookup(name):
            try:
                return sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)})
            except socket.gaierror as exc:
                return f"error {exc.errno}"
        def rcode(name):  # one DNS query (type A) to the pod's nameserver: the answer's RCODE
            question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\\0"
            query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(query, (nameserver, 53))
                return struct.unpack(">HH", sock.recv(512)[:4])[1] & 0xF
        print(json.dumps({
            "routes": routes, "nameserver": nameserver, "service": lookup("named"), "outside": lookup("example.com"),
            "rcode_cluster": rcode("named.NAMESPACE.svc.cluster.local"), "rcode_outside": rcode("example.com"),
        }))
        """
    ).replace("NAMESPACE", namespace)
    cluster.apply(pod("network", real_node, "", container={"command": ["python3", "-c", program]}), namespace)
    found = _wait_pod(cluster, namespace, "network")
    assert found["status"]["phase"] == "Succeeded", describe_pod(cluster, namespace, "network")
    seen = json.loads(logs(cluster, namespace, "network"))
    subnet = real_node.node_ip.rsplit(".", 1)[0]

    # /proc/net/route: interface, destination and gateway in little-endian hex: the bridge's /24 without
    # a gateway, and 10.96.0.0/16 (the Service range) through kube-proxy's namespace (the bridge's .2).
    def hex_address(address: str) -> str:
        return "".join(f"{int(part):02X}" for part in reversed(address.split(".")))

    assert sorted(seen["routes"]) == sorted(
        [
            ["eth0", hex_address(f"{subnet}.0"), "00000000"],
            ["eth0", hex_address("10.96.0.0"), hex_address(f"{subnet}.2")],
        ]
    )
    # ... and kube-proxy's namespace routes nothing beyond the bridge: a packet it DNATs anywhere else
    # (no default route) is dropped there.
    proxy_routes = realnode.RealNode(real_node.cluster).nsenter("ip", "-4", "route", "show", "table", "all")
    assert [r.strip() for r in proxy_routes.splitlines() if not r.startswith(("local ", "broadcast "))] == [
        f"{subnet}.0/24 dev eth0 proto kernel scope link src {subnet}.2"
    ], proxy_routes
    assert seen["nameserver"] == real_node.node_ip
    assert seen["service"] == [service_ip]
    # CoreDNS answers the cluster's names (NOERROR) and refuses every other (REFUSED): nothing is asked
    # upstream; the resolver calls that a temporary failure (EAI_AGAIN).
    assert (seen["rcode_cluster"], seen["rcode_outside"]) == (0, 5)
    assert seen["outside"] == "error -3"


def test_cluster_ip_services_reach_the_api_server_and_a_pod(
    cluster: lc.Cluster, namespace: str, real_node: RealNode
) -> None:
    """kube-proxy on the node: `kubernetes.default` (10.96.0.1:443, DNATed to the API server's relay on
    the bridge) answers a pod as its ServiceAccount, RBAC applying (its `default` account may read
    /version, not list pods); and a Service of a pod on the node answers another pod on its ClusterIP
    (DNATed and masqueraded in kube-proxy's namespace, and back)."""
    server = pod("web", real_node, "", container={"command": ["python3", "-m", "http.server", "8080"]})
    server["metadata"]["labels"] = {"app": "web"}
    cluster.apply(server, namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        namespace,
    )
    _wait_pod(cluster, namespace, "web", ("Running",))
    program = textwrap.dedent(
        """        import json, os, ssl, time, urllib.error, urllib.request
        account = "/var/run/secrets/kubernetes.io/serviceaccount"
        context = ssl.create_default_context(cafile=account + "/ca.crt")
        token = open(account + "/token").read()
        def api(path):
            url = "https://kubernetes.default.svc" + path
            request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
            try:
                with urllib.request.urlopen(request, context=context, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())
        version = api("/version")
        pods = api("/api/v1/namespaces/default/pods")
        web = None
        for attempt in range(60):  # the web server may still be starting; bounded
            try:
                with urllib.request.urlopen("http://web/", timeout=5) as response:
                    web = response.status
                    break
            except OSError:
                time.sleep(0.5)
        print(json.dumps({
            "env": [os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]],
            "version": [version[0], version[1].get("gitVersion")],
            "pods": [pods[0], pods[1].get("reason")],
            "web": web,
        }))
        """
    )
    cluster.apply(pod("client", real_node, "", container={"command": ["python3", "-c", program]}), namespace)
    found = _wait_pod(cluster, namespace, "client")
    assert found["status"]["phase"] == "Succeeded", describe_pod(cluster, namespace, "client")
    seen = json.loads(logs(cluster, namespace, "client"))
    assert seen == {
        "env": ["10.96.0.1", "443"],
        "version": [200, "v1.36.3"],
        "pods": [403, "Forbidden"],
        "web": 200,
    }
