"""The pathsend and zerocopysend ASGI extensions in process: a real HTTPProtocol, parser and cycle on
a real loop, no sockets (tests/harness.py), on both parsers and both loops.

The harness transport has no socket, so the file's bytes go the read-and-write way here (as over
TLS); the sendfile way is tested against a real server in tests/test_files.py.
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from fastserve.asgi.errors import ClientDisconnected
from fastserve.http1.filesend import READ_CHUNK

from .harness import (
    IMPL_IDS,
    IMPLS,
    connection_runner,
    parse_responses,
)

CONTENT = bytes(range(256)) * 40  # 10,240 bytes, every byte value, position-dependent


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def run(request):
    return connection_runner(*request.param)


@pytest.fixture
def path(tmp_path):
    file = tmp_path / "file.bin"
    file.write_bytes(CONTENT)
    return str(file)


def get(path: bytes = b"/", method: bytes = b"GET", version: bytes = b"1.1") -> bytes:
    return b"%s %s HTTP/%s\r\nHost: x\r\n\r\n" % (method, path, version)


def pathsend_app(path, headers=(), before=None):
    """``before()`` runs between the start and the pathsend message (e.g. to fill the socket)."""

    async def app(scope, receive, send):
        assert "http.response.pathsend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        if before is not None:
            before()
        await send({"type": "http.response.pathsend", "path": path})

    return app


def pause_after(transport, size):
    """The socket fills up once ``size`` bytes were written (a client that stops reading)."""
    write = transport.write

    def write_then_fill(data):
        write(data)
        if len(transport.data) >= size and transport.write is write_then_fill:
            transport.write = write  # once
            transport.fill_write_buffer()

    transport.write = write_then_fill


def errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- the scope ----------------------------------------------------------------------------------
def test_scope_offers_the_extensions_in_a_fresh_dict_per_request(run):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["extensions"])
        scope["extensions"]["mine"] = {}  # an app writing to its scope touches no other request's
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async def scenario(conn):
        await conn.request(get() + get())
        offered = {"http.response.pathsend": {}, "http.response.zerocopysend": {}, "http.response.trailers": {},
                   "http.response.early_hint": {}}
        assert seen == [{**offered, "mine": {}}] * 2
        assert seen[0] is not seen[1]

    run(app, scenario)


# -- pathsend -----------------------------------------------------------------------------------
def test_pathsend_with_trailers_is_chunked_and_ended_by_the_trailers(run, path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.pathsend", "path": path})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    async def scenario(conn):
        request = b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"
        (first, second) = await conn.request(request + get())
        assert first.chunked and first.body == CONTENT and first.trailers == [(b"x-checksum", b"abc")]
        assert second.chunked and second.body == CONTENT and second.trailers == []  # no TE: dropped
        assert not conn.closed

    run(app, scenario)


def test_pathsend_sends_the_file_with_its_length_and_keeps_alive(run, path):
    async def scenario(conn):
        responses = await conn.request(get() + get())
        assert [(r.status, r.body) for r in responses] == [(200, CONTENT)] * 2
        for r in responses:
            assert r.headers_named(b"content-length") == [b"%d" % len(CONTENT)] and not r.chunked
        assert r.header(b"content-type") == b"application/x-thing"
        assert not conn.closed

    run(pathsend_app(path, [(b"content-type", b"application/x-thing")]), scenario)


def test_pathsend_with_the_apps_content_length(run, path):
    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.headers_named(b"content-length") == [b"%d" % len(CONTENT)]
        assert response.body == CONTENT and not conn.closed

    run(pathsend_app(path, [(b"content-length", b"%d" % len(CONTENT))]), scenario)


def test_pathsend_of_a_file_longer_than_the_content_length_sends_that_many_bytes(run, path):
    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.body == CONTENT[:100] and response.complete and not conn.closed

    run(pathsend_app(path, [(b"content-length", b"100")]), scenario)


def test_pathsend_of_a_file_shorter_than_the_content_length_is_500(run, path, caplog):
    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(get())
        assert response.status == 500 and conn.closed
        [line] = errors(caplog)
        assert "shorter than the response's content-length" in line.getMessage() and not line.exc_info

    run(pathsend_app(path, [(b"content-length", b"999999")]), scenario)


def test_pathsend_head_has_the_length_and_no_body(run, path):
    async def scenario(conn):
        responses = await conn.request(get(method=b"HEAD") + get(), head_requests={0})
        assert [r.status for r in responses] == [200, 200]
        assert responses[0].header(b"content-length") == b"%d" % len(CONTENT) and responses[0].body == b""
        assert responses[1].body == CONTENT  # so nothing followed the HEAD's head

    run(pathsend_app(path), scenario)


def test_pathsend_empty_file(run, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.status == 200 and response.header(b"content-length") == b"0" and response.body == b""
        assert not conn.closed

    run(pathsend_app(str(empty)), scenario)


def test_pathsend_http10_client(run, path):
    async def scenario(conn):
        [response] = await conn.request(get(version=b"1.0"))
        assert response.body == CONTENT and response.header(b"content-length") == b"%d" % len(CONTENT)

    run(pathsend_app(path), scenario)


@pytest.mark.parametrize("problem", ["missing", "directory", "fifo"])
def test_pathsend_of_a_file_that_cannot_be_opened_is_500_and_one_line(run, tmp_path, caplog, problem):
    target = tmp_path / "gone"
    if problem == "directory":
        target = tmp_path
    elif problem == "fifo":
        os.mkfifo(target)  # opening it must not wait for a writer
    returned = []

    async def app(scope, receive, send):
        await pathsend_app(str(target), [(b"content-type", b"text/plain")])(scope, receive, send)
        returned.append(True)  # send() returned: the server answered for it

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(get())
        assert response.status == 500 and conn.closed and returned
        [line] = errors(caplog)
        assert "Cannot send the file" in line.getMessage() and not line.exc_info

    run(app, scenario)


def test_a_file_deleted_between_start_and_pathsend_is_500_and_one_line(run, path, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        os.unlink(path)  # gone after the app looked at it (Starlette stats the file first)
        await send({"type": "http.response.pathsend", "path": path})

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(get())
        assert response.status == 500 and conn.closed
        [line] = errors(caplog)
        assert "Cannot send the file" in line.getMessage() and not line.exc_info

    run(app, scenario)


def test_zerocopysend_of_a_file_deleted_after_the_app_opened_it_sends_it_whole(run, path):
    async def app(scope, receive, send):
        with open(path, "rb") as file:
            os.unlink(path)  # the open descriptor still reads it (POSIX)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": file})

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.status == 200 and response.body == CONTENT

    run(app, scenario)


@pytest.mark.parametrize("path_value", ["relative/file", b"/bytes/path", None])
def test_pathsend_needs_an_absolute_str_path(run, caplog, path_value):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.pathsend", "path": path_value})

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(get())
        assert response.status == 500
        [line] = errors(caplog)
        assert "Invalid response" in line.getMessage() and "absolute path" in line.getMessage()

    run(app, scenario)


def test_pathsend_before_the_start_is_an_invalid_response(run, path, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.pathsend", "path": path})

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(get())
        assert response.status == 500
        assert "expected ASGI message 'http.response.start'" in errors(caplog)[0].getMessage()

    run(app, scenario)


def test_pathsend_after_a_body_message_is_refused_in_the_app(run, path):
    caught = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        try:
            await send({"type": "http.response.pathsend", "path": path})
        except RuntimeError as exc:
            caught.append(exc)
        await send({"type": "http.response.body", "body": b"def"})

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.body == b"abcdef" and len(caught) == 1

    run(app, scenario)


def test_messages_after_pathsend_are_ignored(run, path):
    async def app(scope, receive, send):
        await pathsend_app(path)(scope, receive, send)
        await send({"type": "http.response.body", "body": b"late"})
        await send({"type": "http.response.pathsend", "path": path})

    async def scenario(conn):
        responses = await conn.request(get() + get())
        assert [r.body for r in responses] == [CONTENT, CONTENT]

    run(app, scenario)


def test_pathsend_waits_for_a_paused_transport_and_holds_one_piece_at_most(run, tmp_path):
    big = tmp_path / "big"
    data = os.urandom(READ_CHUNK * 6 + 123)
    big.write_bytes(data)
    done = []

    async def app(scope, receive, send):
        await pathsend_app(str(big))(scope, receive, send)
        done.append(True)

    async def scenario(conn):
        pause_after(conn.transport, READ_CHUNK)
        conn.feed(get())
        await conn.settle()
        written = len(conn.transport.data)
        assert 0 < written < READ_CHUNK + 1024 and not done  # the head and one piece at most
        conn.transport.drain_write_buffer()
        await conn.settle()
        [response] = conn.responses()
        assert response.body == data and done

    run(app, scenario)


def test_client_gone_mid_file_stops_the_send_without_an_error(run, tmp_path, caplog):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(READ_CHUNK * 4))
    raised = []

    async def app(scope, receive, send):
        try:
            await pathsend_app(str(big))(scope, receive, send)
        except ClientDisconnected as exc:
            raised.append(exc)
            raise

    async def scenario(conn):
        pause_after(conn.transport, READ_CHUNK)
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            conn.feed(get())
            await conn.settle()
            conn.transport.disconnect()
            await conn.settle()
        assert raised and not errors(caplog)
        assert b"200 OK" in conn.transport.data and len(conn.transport.data) < READ_CHUNK + 1024

    run(app, scenario)


# -- zerocopysend ------------------------------------------------------------------------------
def test_zerocopysend_offset_and_count_with_the_apps_length(run, path):
    async def app(scope, receive, send):
        assert "http.response.zerocopysend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"300")]})
        with open(path, "rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 1000, "count": 300})

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.body == CONTENT[1000:1300] and not conn.closed

    run(app, scenario)


def test_zerocopysend_parts_mixed_with_body_messages_are_chunked(run, path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        fd = os.open(path, os.O_RDONLY)  # a bare descriptor works as well as a file object
        try:
            await send({"type": "http.response.body", "body": b"<", "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": fd, "offset": 0, "count": 10, "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": fd, "offset": 10000, "more_body": True})
            await send({"type": "http.response.body", "body": b">"})
        finally:
            os.close(fd)

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.chunked and response.body == b"<" + CONTENT[:10] + CONTENT[10000:] + b">"
        assert not conn.closed

    run(app, scenario)


def test_zerocopysend_without_offset_reads_from_the_position_and_moves_it(run, path):
    positions = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        with open(path, "rb") as file:
            file.read(5)  # a buffered read: the descriptor's own position is further on
            await send({"type": "http.response.zerocopysend", "file": file, "count": 5, "more_body": True})
            positions.append(file.tell())
            await send({"type": "http.response.zerocopysend", "file": file, "count": 5})

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.body == CONTENT[5:15] and positions == [10]

    run(app, scenario)


def test_zerocopysend_longer_than_the_content_length_is_cut_and_closes(run, path, caplog):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        with open(path, "rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 0, "count": 20})

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            conn.feed(get())
            await conn.settle()
        [response] = parse_responses(conn.transport.data)
        assert response.body == CONTENT[:10] and conn.closed
        assert "longer than its content-length" in errors(caplog)[0].getMessage()

    run(app, scenario)


@pytest.mark.parametrize("message", [
    {"file": "not a file"},
    {"offset": -1},
    {"count": 1.5},
    {"offset": 10000, "count": 1000},  # past the end of the file
])
def test_invalid_zerocopysend_is_an_invalid_response(run, path, caplog, message):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        with open(path, "rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file, **message})

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(get())
        assert response.status == 500
        [line] = errors(caplog)
        assert "Invalid response" in line.getMessage() and "zerocopysend" in line.getMessage() and not line.exc_info

    run(app, scenario)


def test_a_file_truncated_while_sent_closes_the_connection(run, tmp_path, caplog):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(READ_CHUNK * 4))

    async def app(scope, receive, send):
        await pathsend_app(str(big))(scope, receive, send)

    async def scenario(conn):
        pause_after(conn.transport, READ_CHUNK)
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            conn.feed(get())
            await conn.settle()
            os.truncate(big, READ_CHUNK)  # after the head said 4 pieces
            conn.transport.drain_write_buffer()
            await conn.settle()
        assert conn.closed
        [response] = parse_responses(conn.transport.data)
        assert not response.complete
        assert "ended early" in errors(caplog)[0].getMessage()

    run(app, scenario)


def test_pathsend_while_another_task_waits_in_receive(run, path):
    """Django and older Starlette listen for http.disconnect while they send."""

    async def app(scope, receive, send):
        await receive()
        listener = asyncio.ensure_future(receive())
        await pathsend_app(path)(scope, receive, send)
        assert not listener.done()
        listener.cancel()

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.body == CONTENT

    run(app, scenario)


def test_shutdown_abort_mid_file_closes_the_file(run, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(READ_CHUNK * 4))

    def open_to_big():
        fds = os.listdir("/proc/self/fd")
        return [fd for fd in fds if _readlink(f"/proc/self/fd/{fd}") == str(big)]

    async def scenario(conn):
        pause_after(conn.transport, READ_CHUNK)
        conn.feed(get())
        await conn.settle()
        assert len(open_to_big()) == 1  # the server's, while it waits for the socket
        conn.protocol.abort()  # --timeout-graceful-shutdown ran out: the app's task is cancelled
        await conn.settle()
        assert conn.transport.aborted and open_to_big() == []

    run(pathsend_app(str(big)), scenario)


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None
