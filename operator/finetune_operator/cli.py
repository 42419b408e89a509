"""`finetune-operator`: run the operator, print the CRD, render or convert FineTuneJobs, parse trainer logs.

Bad input ends with one line on stderr naming the file, the field and the rule, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from finetune_operator import __version__
from finetune_operator.api.convert import conversion_notes, values_to_finetunejob
from finetune_operator.api.crd import crd_yaml
from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.yaml_input import YamlInputError, load_all
from finetune_operator.observe.following import log_text
from finetune_operator.observe.progress import parse_log, trainer_status
from finetune_operator.render.configs import dump_yaml
from finetune_operator.render.manifests import render

EXIT_USAGE = 2


class UsageError(Exception):
    """Input the user must fix; printed as one line, exit status 2."""


def one_line(message: str) -> str:
    """The message on one line: a line break or other unprintable character that came with the user's text
    (a key named "\\n") is shown escaped, as Python writes it."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)


def _read_bytes(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror}") from None


def _read_text(path: str) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def _load_documents(path: str) -> list[Any]:
    try:
        return load_all(_read_text(path), path)
    except YamlInputError as error:
        raise UsageError(f"{path}: not valid YAML: {error}") from None


def _invalid(path: str, error: InvalidFineTuneJob, prefix: str = "") -> UsageError:
    return UsageError(f"{path}: " + "; ".join(prefix + problem for problem in error.problems))


def command_crd(args: argparse.Namespace, out: TextIO) -> None:
    out.write(crd_yaml())


def command_render(args: argparse.Namespace, out: TextIO) -> None:
    documents = _load_documents(args.filename)
    if not documents:
        raise UsageError(f"{args.filename}: no FineTuneJob in the file")
    manifests: list[dict[str, Any]] = []
    for index, document in enumerate(documents):
        where = args.filename if len(documents) == 1 else f"{args.filename} (document {index + 1})"
        if not isinstance(document, dict) or document.get("kind") != "FineTuneJob":
            kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
            raise UsageError(f"{where}: expected kind FineTuneJob, got {str(kind)[:60]!r}")
        try:
            ftj = load_finetunejob(document)
        except InvalidFineTuneJob as error:
            raise _invalid(where, error) from None
        if args.namespace:
            ftj.metadata.namespace = args.namespace
        manifests.extend(render(ftj))
    out.write("---\n".join(dump_yaml(manifest) for manifest in manifests))


def command_convert(args: argparse.Namespace, out: TextIO) -> None:
    documents = _load_documents(args.values)
    values = documents[0] if documents else {}
    if len(documents) > 1:
        raise UsageError(f"{args.values}: a values file holds one YAML document, this one holds {len(documents)}")
    try:
        ftj = values_to_finetunejob(values, name=args.name, namespace=args.namespace)
    except InvalidFineTuneJob as error:
        raise _invalid(args.values, error) from None
    out.write("".join(f"# {note}\n" for note in conversion_notes(values)) + dump_yaml(ftj))


def command_parse_log(args: argparse.Namespace, out: TextIO) -> None:
    max_iter = args.max_iter
    # A log, unlike a spec, is read whatever its bytes: as the operator reads it.
    progress = parse_log(log_text(_read_bytes(args.file)), max_iter=max_iter, final=True)
    status = trainer_status(progress, None).model_dump(by_alias=True, exclude_none=True)
    status["verdict"] = progress.verdict
    if progress.evidence:
        status["evidence"] = progress.evidence
    out.write(json.dumps(status, indent=2) + "\n")


def command_run(args: argparse.Namespace, out: TextIO) -> None:
    # Imported here: the other commands need neither kopf nor a cluster.
    from finetune_operator.controller.context import Settings
    from finetune_operator.controller.run import CrdMissing, Options, run

    try:
        run(
            Options(
                namespaces=args.namespace or [],
                dev=args.dev,
                install_crd=args.install_crd,
                liveness=args.liveness,
                peering=args.peering,
                priority=args.priority,
                peering_lifetime=args.peering_lifetime,
                metrics=(args.metrics_address, args.metrics_port) if args.metrics_port else None,
                settings=Settings(
                    log_interval=args.log_interval,
                    stall_intervals=args.stall_intervals,
                    allow_privileged=args.allow_privileged,
                    allow_any_toleration=args.allow_any_toleration,
                ),
            )
        )
    except CrdMissing as error:
        raise UsageError(str(error)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune-operator",
        description="Fine-tune LLMs with Phison aiDAPTIV+ on Kubernetes: the FineTuneJob operator and its tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_cmd = commands.add_parser("run", help="run the operator (current kubeconfig, or in-cluster)")
    run_cmd.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable; default: all)"
    )
    run_cmd.add_argument("--dev", action="store_true", help="verbose, human-readable logs for a terminal")
    run_cmd.add_argument("--install-crd", action="store_true", help="create or update the CRD before starting")
    run_cmd.add_argument(
        "--liveness", metavar="URL", help="serve kopf's health endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    run_cmd.add_argument("--peering", metavar="NAME", help="run with kopf peering (HA) under this peering name")
    run_cmd.add_argument(
        "--priority",
        type=int,
        help="peering priority; the highest is active (default: by start time, the oldest replica stays active)",
    )
    run_cmd.add_argument(
        "--peering-lifetime",
        type=int,
        default=30,
        help="seconds after a replica's last keep-alive before another takes over (default 30)",
    )
    run_cmd.add_argument(
        "--log-interval", type=float, default=15.0, help="seconds between reads of a running training's log"
    )
    run_cmd.add_argument(
        "--stall-intervals",
        type=_positive_int,
        default=60,
        help="log reads in a row without new progress before a running training is Progressing=False (default 60)",
    )
    run_cmd.add_argument(
        "--allow-privileged",
        action="store_true",
        help=(
            "let FineTuneJobs ask for what Pod Security baseline refuses: a privileged trainer, added "
            "capabilities, unconfined seccomp or AppArmor, other SELinux types (refused by default)"
        ),
    )
    run_cmd.add_argument(
        "--allow-any-toleration",
        action="store_true",
        help="let FineTuneJobs tolerate every taint or the control-plane taints (refused by default)",
    )
    run_cmd.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    run_cmd.add_argument("--metrics-address", default="0.0.0.0", help="address of the metrics server")
    run_cmd.set_defaults(handler=command_run)

    parse = commands.add_parser("parse-log", help="print the trainerStatus (progress, loss, ETA) of a trainer log")
    parse.add_argument("file", help="the trainer's log file, or - for stdin")
    parse.add_argument("--max-iter", type=int, help="expConfig.runSettings.maxIter, if the log does not say")
    parse.set_defaults(handler=command_parse_log)

    crd = commands.add_parser("crd", help="print the FineTuneJob CustomResourceDefinition")
    crd.set_defaults(handler=command_crd)

    render_cmd = commands.add_parser("render", help="print the ConfigMap and Job a FineTuneJob becomes")
    render_cmd.add_argument("-f", "--filename", required=True, help="FineTuneJob YAML file, or - for stdin")
    render_cmd.add_argument("-n", "--namespace", help="namespace to render into (overrides metadata.namespace)")
    render_cmd.set_defaults(handler=command_render)

    convert = commands.add_parser(
        "convert", help="turn a values.yaml of the aidaptivcache-finetune chart into a FineTuneJob"
    )
    convert.add_argument("values", help="the chart's values file, or - for stdin")
    convert.add_argument("--name", help="name of the FineTuneJob (default: the values' job.name)")
    convert.add_argument("-n", "--namespace", help="namespace of the FineTuneJob")
    convert.set_defaults(handler=command_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args, sys.stdout)
    except UsageError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
