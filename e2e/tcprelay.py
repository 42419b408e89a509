#!/usr/bin/env python3
"""A TCP relay: accepts on one address and copies bytes both ways to another (standard library only).

The real node's pods reach the API server through the ``kubernetes`` Service, whose endpoint must be
an address they can route to: kube-proxy DNATs 10.96.0.1:443 to it, and an EndpointSlice may not
name a loopback address. The API server listens on 127.0.0.1 only (as everything of the cluster
does), so this relay listens on the node's bridge address and connects to 127.0.0.1: TLS passes
through untouched (the API server's certificate names 10.96.0.1 and kubernetes.default.svc).

Usage: ``python3 e2e/tcprelay.py --listen 10.245.0.1:6443 --connect 127.0.0.1:37123``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: Bytes read at once from one side before they are written to the other.
CHUNK = 64 * 1024


def parse_address(text: str) -> tuple[str, int]:
    """``"10.245.0.1:6443"`` -> ``("10.245.0.1", 6443)`` (IPv4 or a name; no brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (TLS close_notify and HTTP/2 GOAWAY still pass)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def relay_handler(upstream: tuple[str, int], open_writers: set[asyncio.StreamWriter]) -> Handler:
    """A connection handler that opens a connection to ``upstream`` and copies both ways until both
    sides have ended; the writers of open connections are kept in ``open_writers`` (closed at stop)."""

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            await _close(client_writer)  # the client sees the connection closed, as with no listener
            return
        open_writers.update((client_writer, up_writer))
        try:
            await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
        finally:
            open_writers.difference_update((client_writer, up_writer))
            await _close(up_writer)
            await _close(client_writer)

    return handle


async def serve(listen: tuple[str, int], upstream: tuple[str, int], stop: asyncio.Event) -> None:
    """Relay until ``stop`` is set; then close the listener and every open connection at once (a
    client such as kube-proxy keeps its connection open for ever: waiting for it would never end)."""
    open_writers: set[asyncio.StreamWriter] = set()
    server = await asyncio.start_server(relay_handler(upstream, open_writers), *listen, reuse_address=True)
    print(f"tcprelay: {listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}", flush=True)
    await stop.wait()
    server.close()
    for writer in list(open_writers):
        writer.close()


async def _main(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(listen, upstream, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_address, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--connect", type=parse_address, required=True, help="HOST:PORT to relay to")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.listen, args.connect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
