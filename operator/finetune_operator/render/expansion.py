"""Text the kubelet passes on unchanged.

The kubelet expands `$(VAR)` (to VAR's value, when the container defines it) and `$$` (to `$`) in a
container's env values, command and args (k8s.io/kubernetes third_party/forked/golang/expansion).
User text placed there must reach the container as written: `outputDir: /mnt/data/run$$1` became
`run$1` in FTO_OUTPUT_DIR while env_config.yaml, a file, kept it, so the entrypoint judged another log
than the trainer wrote. Doubling every `$` is the escape: the kubelet turns each `$$` back into `$` and
sees no reference.
"""

from __future__ import annotations


def literal(text: str) -> str:
    """`text` as an env value, command or argument that the kubelet leaves as written."""
    return text.replace("$", "$$")
