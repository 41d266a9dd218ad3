"""sendfile's pacing (http1/filesend.py): during a transfer over TCP the socket holds at most
SENDFILE_NOTSENT_LOWAT unsent bytes; afterwards the connection's own setting is back, for the
responses that follow on it. A real loopback connection and a real transport, on both loops; the
server's socket option is read through the transport, which a client cannot see."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import uvloop

from fastserve.asgi.flow import FlowControl
from fastserve.http1.filesend import SENDFILE_NOTSENT_LOWAT, send_file_bytes

SIZE = 6 * 1024 * 1024  # more than a socket pair's buffers hold: the transfer must wait for the reader


class _Out:
    """The little of a HeldWriter that send_file_bytes uses: nothing held back."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def release(self) -> None:
        pass

    def write_now(self, data: bytes) -> None:
        self.transport.write(data)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.flow: FlowControl | None = None

    def connection_made(self, transport) -> None:
        self.flow = FlowControl(transport)

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def connection_lost(self, exc) -> None:
        self.flow.connection_lost()


def _lowat(transport) -> int:
    return transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)


async def _transfer(path: str) -> tuple[list[int], int, bytes]:
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    client.setblocking(False)
    transport, protocol = await loop.connect_accepted_socket(_Protocol, accepted)
    fd = os.open(path, os.O_RDONLY)
    try:
        sending = asyncio.ensure_future(send_file_bytes(_Out(transport), protocol.flow, fd, 0, SIZE))
        seen = []
        while not sending.done() and len(seen) < 20:  # the client is not reading yet: it waits
            await asyncio.sleep(0.01)
            seen.append(_lowat(transport))
        received = bytearray()
        while len(received) < SIZE:
            received += await loop.sock_recv(client, 1 << 20)
        await sending
        after = _lowat(transport)
    finally:
        os.close(fd)
        transport.close()
        client.close()
    return seen, after, bytes(received)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_sendfile_limits_unsent_bytes_while_sending_and_restores_the_socket_after(loop_name, tmp_path):
    path = tmp_path / "big.bin"
    content = os.urandom(SIZE)
    path.write_bytes(content)
    new_loop = uvloop.new_event_loop if loop_name == "uvloop" else asyncio.new_event_loop
    loop = new_loop()
    try:
        seen, after, received = loop.run_until_complete(asyncio.wait_for(_transfer(str(path)), 20))
    finally:
        loop.close()
    assert received == content
    assert seen and set(seen) == {SENDFILE_NOTSENT_LOWAT}  # paced while the reader lagged
    assert after == 0  # the connection's own (the system's default) again
