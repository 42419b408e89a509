"""e2e/tcprelay.py, the real node's relay to the API server: bytes pass both ways unchanged, a half-close
passes through, an upstream that is not there closes the client's connection, and a stop ends every
open connection at once. Real sockets on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import tcprelay

RELAY = Path(tcprelay.__file__)
#: Every wait is bounded: a relay that hangs fails the test instead of hanging it.
TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _upstream(received: list[bytes]) -> asyncio.Server:
    """Answers each connection with what it read, upper-cased, after the client's EOF (a half-close)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until EOF: the relay must pass the client's half-close on
        received.append(data)
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _relay(upstream_port: int) -> tuple[asyncio.Event, asyncio.Task[None], int]:
    stop = asyncio.Event()
    port = _free_port()
    task = asyncio.create_task(tcprelay.serve(("127.0.0.1", port), ("127.0.0.1", upstream_port), stop))
    for _ in range(100):  # until it listens
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return stop, task, port
    raise AssertionError("the relay never listened")


def test_bytes_and_the_half_close_pass_both_ways() -> None:
    async def scenario() -> tuple[list[bytes], bytes]:
        received: list[bytes] = []
        upstream = await _upstream(received)
        stop, task, port = await _relay(upstream.sockets[0].getsockname()[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = bytes(range(256)) * 1024  # binary, larger than one read of the relay
        writer.write(payload)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        upstream.close()
        return [r for r in received if r], answer  # (not the empty one of _relay's listening probe)

    received, answer = asyncio.run(scenario())
    assert received == [bytes(range(256)) * 1024]
    assert answer == (bytes(range(256)) * 1024).upper()


def test_an_absent_upstream_closes_the_clients_connection() -> None:
    async def scenario() -> bytes:
        stop, task, port = await _relay(_free_port())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        return answer

    assert asyncio.run(scenario()) == b""


def test_sigterm_ends_the_relay_with_its_connections_open() -> None:
    """kube-proxy keeps its connection open for ever: the relay must not wait for it when stopped."""

    async def scenario() -> int:
        connected = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connected.set()
            await reader.read()

        upstream = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = _free_port()
        argv = [sys.executable, str(RELAY), "--listen", f"127.0.0.1:{port}"]
        argv += ["--connect", f"127.0.0.1:{upstream.sockets[0].getsockname()[1]}"]
        relay = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE)
        assert relay.stdout is not None
        await asyncio.wait_for(relay.stdout.readline(), TIMEOUT)  # it printed: it listens
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"open")
        await writer.drain()
        await asyncio.wait_for(connected.wait(), TIMEOUT)  # the relay holds a connection upstream
        os.kill(relay.pid, signal.SIGTERM)
        code = await asyncio.wait_for(relay.wait(), TIMEOUT)
        writer.close()
        upstream.close()
        return code

    assert asyncio.run(scenario()) == 0


@pytest.mark.parametrize("text", ["6443", ":6443", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "a:b"])
def test_an_address_that_is_not_host_port_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        tcprelay.parse_address(text)


def test_an_address_is_host_and_port() -> None:
    assert tcprelay.parse_address("10.245.0.1:6443") == ("10.245.0.1", 6443)
