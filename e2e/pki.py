"""The cluster's certificates (made with openssl), its admin kubeconfig, and TLS contexts."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

from .common import ClusterError

#: Leaf certificates signed by the cluster's CA: file stem -> (subject, extended key usage, SAN).
LEAVES: dict[str, tuple[str, str, str | None]] = {
    "apiserver": (
        "/CN=kube-apiserver",
        "serverAuth",
        "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
    ),
    "kwok": ("/CN=kwok", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
    "admin": ("/O=system:masters/CN=kubernetes-admin", "clientAuth", None),
    "front-proxy-client": ("/CN=front-proxy-client", "clientAuth", None),
}


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _ec_key(name: str, pki: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)


def _make_ca(pki: Path) -> None:
    _ec_key("ca", pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3650",
        "-subj", "/CN=finetune-operator-e2e-ca", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )  # fmt: skip


def leaf_extensions(usage: str, san: str | None) -> str:
    """The openssl extension file of a leaf certificate."""
    ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    ext.append(f"extendedKeyUsage={usage}")
    if san:
        ext.append(f"subjectAltName={san}")
    return "\n".join(ext) + "\n"


def _make_leaf(name: str, subject: str, usage: str, san: str | None, pki: Path) -> None:
    _ec_key(name, pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    (pki / f"{name}.ext").write_text(leaf_extensions(usage, san))
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650", "-sha256",
        "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        cwd=pki,
    )  # fmt: skip


def serving_certificate(pki: Path, name: str, directory: Path) -> Path:
    """A process's serving certificate for 127.0.0.1, signed by the cluster's CA (made once as
    ``<name>.crt`` in ``pki``), copied as ``tls.crt``/``tls.key`` into ``directory`` (a webhook server's
    certDir)."""
    directory.mkdir(exist_ok=True)
    if not (pki / f"{name}.crt").exists():
        add_leaf(pki, name, f"/CN={name}-webhook", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    shutil.copyfile(pki / f"{name}.crt", directory / "tls.crt")
    shutil.copyfile(pki / f"{name}.key", directory / "tls.key")
    (directory / "tls.key").chmod(0o600)
    return directory


def add_leaf(pki: Path, name: str, subject: str, usage: str, san: str | None = None) -> None:
    """One more leaf certificate signed by the cluster's CA (``<name>.crt``/``<name>.key`` in ``pki``),
    e.g. the real node's kubelet: its client certificate and its serving certificate for its IP."""
    _make_leaf(name, subject, usage, san, pki)
    (pki / f"{name}.key").chmod(0o600)


def make_pki(pki: Path) -> None:
    """CA, apiserver/kwok serving certs, admin and front-proxy client certs, service-account keys."""
    if shutil.which("openssl") is None:
        raise ClusterError("openssl is needed to make the cluster's certificates")
    pki.mkdir(parents=True, exist_ok=True)
    _make_ca(pki)
    for name, (subject, usage, san) in LEAVES.items():
        _make_leaf(name, subject, usage, san, pki)
    _ec_key("sa", pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def kubeconfig(server: str, pki: Path, name: str) -> dict[str, object]:
    """An admin kubeconfig (client certificate of ``system:masters``) for ``server``."""
    ctx = f"fto-{name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": ctx, "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": f"{ctx}-admin",
                "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
            }
        ],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": f"{ctx}-admin"}}],
        "current-context": ctx,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, pki: Path, name: str) -> None:
    path.write_text(json.dumps(kubeconfig(server, pki, name), indent=2) + "\n")  # JSON is valid YAML


def admin_ssl(pki: Path) -> ssl.SSLContext:
    """TLS as the cluster admin, trusting only the cluster's CA (for the API server)."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def admin_ssl_any_name(pki: Path) -> ssl.SSLContext:
    """As ``admin_ssl``, but the server's name is not checked, only that the cluster's CA signed its
    certificate: the API server through the real node's relay, on an address its certificate does not
    name (the bridge's, chosen after the certificate was made)."""
    ctx = admin_ssl(pki)
    ctx.check_hostname = False
    return ctx


def insecure_ssl() -> ssl.SSLContext:
    """TLS without verification: controller-manager and scheduler serve self-signed certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
