"""OCI image archives written here, byte for byte the same for the same inputs (no registry, no tool).

``containerd`` imports them with ``ctr images import``; the real node's pause image (one static
binary) and the stand-in trainer (one layer on the project's local Debian base) are made so.

An archive is a tar of an OCI image layout: ``oci-layout``, ``index.json`` (whose manifest carries
``io.containerd.image.name``, the name ``ctr`` gives the image, and
``org.opencontainers.image.ref.name``), and ``blobs/sha256/<digest>``. Layers are gzip-compressed
tars with fixed times and owners. Standard library only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
#: The time written into layers and configs (the same archive for the same inputs).
EPOCH = 0


@dataclass(frozen=True)
class FileEntry:
    """A file, directory or symlink of a layer: path inside the image (no leading "/")."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"  # "file", "dir" or "symlink"
    target: str = ""


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        found: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            found["annotations"] = dict(self.annotations)
        return found


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(entries: Iterable[FileEntry]) -> bytes:
    """An uncompressed layer: entries in path order, parents first, root-owned, time EPOCH."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path.strip("/") + ("/" if entry.kind == "dir" else ""))
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return out.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=EPOCH)


def parents(path: str) -> list[FileEntry]:
    """Directory entries of every parent of ``path`` ("a/b/c" -> "a", "a/b")."""
    parts = path.strip("/").split("/")[:-1]
    return [FileEntry("/".join(parts[: i + 1]), mode=0o755, kind="dir") for i in range(len(parts))]


def with_parents(entries: Iterable[FileEntry]) -> list[FileEntry]:
    found: dict[str, FileEntry] = {}
    for entry in entries:
        for parent in parents(entry.path):
            found.setdefault(parent.path, parent)
        found[entry.path.strip("/")] = entry
    return list(found.values())


@dataclass(frozen=True)
class Image:
    """What an archive holds: layers (compressed blobs with their uncompressed digests) and config."""

    layers: tuple[tuple[Blob, str], ...]  # (gzip blob, diff id)
    config: dict[str, Any]

    def add_layer(self, entries: Iterable[FileEntry], created_by: str) -> Image:
        raw = layer_tar(with_parents(entries))
        diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        config = json.loads(json.dumps(self.config))
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        config.setdefault("history", []).append({"created": _time(), "created_by": created_by})
        return Image((*self.layers, (Blob(LAYER, gzip_bytes(raw)), diff_id)), config)

    def with_config(self, **settings: Any) -> Image:
        """The image with keys of its ``config`` (Env, Entrypoint, Cmd, User, Labels, ...) replaced."""
        config = json.loads(json.dumps(self.config))
        config.setdefault("config", {}).update(settings)
        return Image(self.layers, config)

    def blobs(self) -> tuple[Blob, Blob, list[Blob]]:
        """(manifest, config, layers)."""
        config = Blob(CONFIG, _canonical(self.config))
        layers = [blob for blob, _ in self.layers]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.descriptor(),
            "layers": [blob.descriptor() for blob in layers],
        }
        return Blob(MANIFEST, _canonical(manifest)), config, layers


def _time() -> str:
    return "1970-01-01T00:00:00Z"


def empty_image() -> Image:
    return Image(
        (),
        {
            "created": _time(),
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        },
    )


def write_archive(image: Image, name: str, path: Path) -> str:
    """Write ``image`` named ``name`` (``registry/repository:tag``) to ``path``; return its manifest digest."""
    manifest, config, layers = image.blobs()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    entry = manifest.descriptor() | {"annotations": {NAME_ANNOTATION: name, REF_ANNOTATION: tag}}
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}
    files: dict[str, bytes] = {"oci-layout": _canonical({"imageLayoutVersion": "1.0.0"})}
    for blob in (manifest, config, *layers):
        files[f"blobs/sha256/{blob.digest.removeprefix('sha256:')}"] = blob.data
    files["index.json"] = _canonical(index)
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
        for member, data in sorted(files.items()):
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return manifest.digest


def read_archive(path: Path) -> Image:
    """The single image of an OCI archive (e.g. the one ``buildah push oci-archive:`` wrote)."""
    with tarfile.open(path) as tar:

        def read(member: str) -> bytes:
            handle = tar.extractfile(member.removeprefix("./"))
            if handle is None:
                raise ValueError(f"{path}: {member} is not a file")
            return handle.read()

        index = json.loads(read("index.json"))
        manifests = index.get("manifests") or []
        if len(manifests) != 1:
            raise ValueError(f"{path}: expected one manifest in index.json, found {len(manifests)}")
        manifest = json.loads(read(_blob_path(manifests[0]["digest"])))
        config = json.loads(read(_blob_path(manifest["config"]["digest"])))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = []
        for descriptor, diff_id in zip(manifest["layers"], diff_ids, strict=True):
            if descriptor["mediaType"] not in (LAYER, "application/vnd.docker.image.rootfs.diff.tar.gzip"):
                raise ValueError(f"{path}: layer type {descriptor['mediaType']} is not gzip")
            layers.append((Blob(LAYER, read(_blob_path(descriptor["digest"]))), diff_id))
    return Image(tuple(layers), config)


def _blob_path(digest: str) -> str:
    algorithm, hex_digest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hex_digest}"
