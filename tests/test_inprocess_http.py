"""The HTTP cycle in process: a real HTTPProtocol, parser and cycle on a real loop, no sockets.

Every test runs on both parsers and both loops (tests/harness.py). These cover the behaviours of
tests/test_http.py that do not depend on the event loop's socket handling, in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from fastserve.asgi.errors import ClientDisconnected

from .harness import IMPL_IDS, IMPLS, Connection, connection_runner

GET = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
HELLO = b"Hello, world!"


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def run(request):
    return connection_runner(*request.param)


def get(path: bytes = b"/", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: x\r\n%s\r\n" % (path, version, extra)


async def start(send, status=200, headers=()):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})


async def body(send, data=b"", more=False):
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def hello(scope, receive, send):
    await start(send, 200, [(b"content-type", b"text/plain")])
    await body(send, HELLO)


async def read_all(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        chunks.append(message["body"])
        if not message["more_body"]:
            return b"".join(chunks)


async def echo(scope, receive, send):
    data = await read_all(receive)
    await start(send)
    await body(send, data)


# -- content-length and keep-alive --------------------------------------------------------------
def test_single_body_gets_content_length_and_keeps_alive(run):
    async def scenario(conn):
        responses = await conn.request(get() + get())
        assert [(r.status, r.body) for r in responses] == [(200, HELLO), (200, HELLO)]
        for r in responses:
            assert r.headers_named(b"content-length") == [b"13"]
            assert r.header(b"transfer-encoding") is None and not r.closes
            assert r.header(b"server") == b"fastserve" and r.header(b"date")
        assert not conn.closed

    run(hello, scenario)


def test_app_content_length_is_not_duplicated(run):
    async def app(scope, receive, send):
        await start(send, 200, [(b"Content-Length", b"5")])
        await body(send, b"12345")

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.headers_named(b"content-length") == [b"5"] and response.body == b"12345"
        assert not conn.closed

    run(app, scenario)


def test_scope_path_is_decoded_and_raw_path_kept(run):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)
        await hello(scope, receive, send)

    async def scenario(conn):
        await conn.request(get(b"/sc%6Fpe/%E2%82%AC%20x?q=%E2%82%AC"))
        [scope] = seen
        assert scope["path"] == "/scope/€ x"
        assert scope["raw_path"] == b"/sc%6Fpe/%E2%82%AC%20x"
        assert scope["query_string"] == b"q=%E2%82%AC"
        assert scope["http_version"] == "1.1" and scope["method"] == "GET"
        assert scope["client"] == ("127.0.0.1", 50000) and scope["server"] == ("127.0.0.1", 8000)

    run(app, scenario)


# -- chunked ------------------------------------------------------------------------------------
def test_streamed_response_is_chunked(run):
    async def app(scope, receive, send):
        await start(send)
        for part in (b"aaaa", b"", b"bb"):
            await body(send, part, more=True)
        await body(send, b"")

    async def scenario(conn):
        conn.feed(get())
        await conn.settle()
        data = conn.transport.data
        head, _, framed = data.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head and b"content-length" not in head
        assert framed == b"4\r\naaaa\r\n2\r\nbb\r\n0\r\n\r\n"  # an empty part writes no empty chunk
        assert not conn.closed

    run(app, scenario)


def test_chunked_request_body_reaches_the_app(run):
    async def scenario(conn):
        request = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        [response] = await conn.request(request)
        assert response.status == 200 and response.body == b"hello world"

    run(echo, scenario)


def test_request_body_in_small_reads(run):
    async def scenario(conn):
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
        for i in range(len(request)):
            conn.feed(request[i : i + 1])
            await asyncio.sleep(0)
        await conn.settle()
        [response] = conn.responses()
        assert response.body == b"0123456789"

    run(echo, scenario)


def read_by_read(request: bytes, read_size: int, refusal: bytes | None):
    """A scenario: ``request`` fed in reads of ``read_size`` bytes gets a 200, or a 431 whose
    body is ``refusal`` (when not None)."""

    async def scenario(conn):
        for i in range(0, len(request), read_size):
            conn.feed(request[i : i + read_size])
            await asyncio.sleep(0)
        await conn.settle()
        [response] = conn.responses()
        assert response.status == (200 if refusal is None else 431), response.body
        assert refusal is None or response.body == refusal

    return scenario


@pytest.mark.parametrize("read_size", [1, 7, 50, 120, 150, 199, 4096])
@pytest.mark.parametrize("over", [0, 1])
def test_header_section_limit_is_exact_however_the_head_is_read(run, read_size, over):
    """--limit-request-headers-size counts name + value + 4 per field, whatever the reads: the
    httptools adapter adds fields up one by one only in a read that could cross the limit or a
    head begun in an earlier read (reads of 120 and 150 bytes end with whole fields pending)."""
    fields = b"Host: x\r\nA: " + b"v" * 90 + b"\r\nB: " + b"v" * (91 + over) + b"\r\n"  # 9 + 95 + 96 bytes
    request = b"GET / HTTP/1.1\r\n" + fields + b"\r\n"
    run(hello, read_by_read(request, read_size, b"Request header section too large" if over else None),
        limit_request_headers_size=200)


@pytest.mark.parametrize("read_size", [1, 7, 20, 33, 4096])
@pytest.mark.parametrize("over", [0, 1])
def test_header_field_count_limit_holds_however_the_head_is_read(run, read_size, over):
    """--limit-request-fields, whatever the reads: the fields of a small read that completes
    its head are counted then; others (reads of 20 and 33 bytes leave fields pending for the
    next read) field by field."""
    fields = b"Host: x\r\n" + b"".join(b"F%d:\r\n" % i for i in range(2 + over))  # 3 fields, or 4
    # (One read of it is small: at most 16 bytes a field allowed, 48 here.)
    request = b"GET / HTTP/1.1\r\n" + fields + b"\r\n"
    run(hello, read_by_read(request, read_size, b"Too many request header fields" if over else None),
        limit_request_fields=3)


@pytest.mark.parametrize("read_size", [1, 9, 4096])
@pytest.mark.parametrize("over", [0, 1])
def test_trailer_section_holds_no_more_fields_than_a_head(run, read_size, over):
    """A chunked body's trailer section is held to --limit-request-fields too, on both parsers."""
    trailers = b"".join(b"T%d: v\r\n" % i for i in range(3 + over))  # 3 fields, or 4
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n" + trailers + b"\r\n"
    run(echo, read_by_read(request, read_size, b"Too many request header fields" if over else None),
        limit_request_fields=3)


# -- HEAD, 204, 304 -----------------------------------------------------------------------------
def test_head_sends_headers_without_body(run):
    async def scenario(conn):
        request = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get()
        responses = await conn.request(request, head_requests={0})
        assert [r.status for r in responses] == [200, 200]
        assert responses[0].header(b"content-length") == b"13" and responses[0].body == b""
        assert responses[1].body == HELLO  # so no body bytes were written after the HEAD's head

    run(hello, scenario)


def test_head_of_a_streamed_response_has_no_chunks(run):
    async def app(scope, receive, send):
        await start(send)
        await body(send, b"abc", more=True)
        await body(send, b"")

    async def scenario(conn):
        conn.feed(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        await conn.settle()
        data = conn.transport.data
        assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1, data
        assert b"abc" not in data

    run(app, scenario)


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(run, code):
    async def app(scope, receive, send):
        await start(send, code, [(b"content-length", b"10")] if code == 304 else [])
        await body(send, b"must not be sent")

    async def scenario(conn):
        conn.feed(get() + get())
        await conn.settle()
        data = conn.transport.data
        assert b"must not be sent" not in data and b"transfer-encoding" not in data
        responses = conn.responses()
        assert [r.status for r in responses] == [code, code]  # both heads parse: no stray bytes
        if code == 204:
            assert responses[0].header(b"content-length") is None
        else:
            assert responses[0].header(b"content-length") == b"10"  # 304 may keep the length
        assert not conn.closed

    run(app, scenario)


# -- HTTP/1.0 -----------------------------------------------------------------------------------
def test_http10_closes_by_default(run):
    async def scenario(conn):
        [response] = await conn.request(get(version=b"1.0"))
        await conn.settle()
        assert response.body == HELLO and response.closes
        assert conn.closed and not conn.transport.late

    run(hello, scenario)


def test_http10_keep_alive(run):
    async def scenario(conn):
        request = get(extra=b"Connection: keep-alive\r\n", version=b"1.0")
        responses = await conn.request(request + request)
        assert [r.body for r in responses] == [HELLO, HELLO]
        assert all(r.header(b"connection") == b"keep-alive" for r in responses)
        assert not conn.closed

    run(hello, scenario)


def test_http10_streamed_response_is_close_delimited(run):
    async def app(scope, receive, send):
        await start(send)
        await body(send, b"aaa", more=True)
        await body(send, b"bbb")

    async def scenario(conn):
        conn.feed(get(extra=b"Connection: keep-alive\r\n", version=b"1.0"))
        await conn.settle()
        head, _, rest = conn.transport.data.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head and b"connection: close" in head
        assert rest == b"aaabbb" and conn.closed

    run(app, scenario)


# -- 100-continue -------------------------------------------------------------------------------
def test_expect_100_continue_sent_when_the_app_reads(run):
    async def scenario(conn):
        conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        await conn.settle()
        assert conn.transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
        [response] = await conn.request(b"hello")
        assert response.status == 200 and response.body == b"hello"

    run(echo, scenario)


def test_expect_100_not_sent_when_the_app_does_not_read(run):
    async def scenario(conn):
        [response] = await conn.request(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert response.status == 200 and b"100 Continue" not in conn.transport.data

    run(hello, scenario)


# -- pipelining ---------------------------------------------------------------------------------
def test_pipelined_requests_answered_in_order(run):
    delays = {"/a": 0.03, "/b": 0.01, "/c": 0.0}

    async def app(scope, receive, send):
        await asyncio.sleep(delays[scope["path"]])
        await start(send)
        await body(send, scope["path"].encode())

    async def scenario(conn):
        conn.feed(get(b"/a") + get(b"/b") + get(b"/c"))
        await conn.settle()
        if conn.config.http == "httptools":  # (h11 parses the next request only after a response)
            assert "pause_reading" in conn.transport.events  # requests queued: no more reading
        await asyncio.sleep(0.1)
        await conn.settle()
        assert [r.body for r in conn.responses()] == [b"/a", b"/b", b"/c"]
        assert conn.transport.reading  # all answered: reading again
        assert not conn.closed

    run(app, scenario)


def test_request_after_connection_close_is_never_answered(run):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await hello(scope, receive, send)

    async def scenario(conn):
        conn.feed(get(b"/first", b"Connection: close\r\n") + get(b"/smuggled"))
        await conn.settle()
        assert [r.status for r in conn.responses()] == [200]
        assert calls == ["/first"] and conn.ended  # (lingering: the smuggled bytes are unread)

    run(app, scenario)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_the_apps_connection_close_ends_the_connection_after_its_response(run, streamed):
    """The app's own Connection: close (read by the HTTP/1.1 writer from the rendered head): sent
    once, the connection closes after the response, a pipelined request is never answered."""
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await start(send, 200, [(b"Connection", b"close")])
        if streamed:
            await body(send, b"ab", more=True)
        await body(send, b"cd")

    async def scenario(conn):
        conn.feed(get(b"/first") + get(b"/second"))
        await conn.settle()
        [response] = conn.responses()
        assert response.body == (b"abcd" if streamed else b"cd") and response.chunked == streamed
        assert conn.transport.data.lower().count(b"connection: close") == 1
        assert calls == ["/first"] and conn.ended

    run(app, scenario)


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\n\r\n",  # no Host
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01garbage\r\n\r\n",
], ids=["no-host", "two-hosts", "cl-and-te", "te-gzip", "method", "version", "garbage"])
def test_bad_requests_get_400_and_never_reach_the_app(run, request_bytes, caplog):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope)
        await hello(scope, receive, send)

    async def scenario(conn):
        with caplog.at_level(logging.INFO, logger="fastserve.error"):
            [response] = await conn.request(request_bytes)
        assert response.status == 400 and response.closes
        assert conn.ended and calls == []
        refusals = [r for r in caplog.records if r.getMessage().startswith("Refused a request")]
        assert len(refusals) == 1 and refusals[0].exc_info is None
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # read and dropped: nothing parsed after a refusal
        conn.feed_eof()  # the client, having read its answer, closes: so does the lingering close
        await conn.settle()
        assert conn.closed and calls == [] and conn.transport.data == b""  # no second answer

    run(app, scenario)


def test_refusal_after_pipelined_requests_is_answered_after_them(run):
    async def app(scope, receive, send):
        await asyncio.sleep(0.01)
        await hello(scope, receive, send)

    async def scenario(conn):
        conn.feed(get(b"/a") + b"GET / HTTP/1.1\r\n\r\n")  # the second has no Host
        await asyncio.sleep(0.05)
        await conn.settle()
        assert [r.status for r in conn.responses()] == [200, 400]
        assert conn.ended and not conn.transport.late

    run(app, scenario)


def test_request_head_timeout_answers_408(run):
    async def scenario(conn):
        conn.feed(b"GET / HTTP/1.1\r\nHo")
        await asyncio.sleep(0.15)
        await conn.settle()
        [response] = conn.responses()
        assert response.status == 408 and conn.ended

    run(hello, scenario, timeout_request_header=0.05)


def test_concurrency_limit_answers_503(run):
    async def scenario(conn):
        conn.state.active_requests = 1  # another connection's request is in flight
        [response] = await conn.request(get())
        assert response.status == 503 and response.header(b"retry-after") == b"1"
        assert response.closes and conn.closed
        assert conn.state.active_requests == 1

    run(hello, scenario, limit_concurrency=1)


# -- app failures -------------------------------------------------------------------------------
def test_exception_before_the_response_is_500(run, caplog):
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    async def scenario(conn):
        [response] = await conn.request(get() + get())
        await conn.settle()
        assert response.status == 500 and response.body == b"Internal Server Error" and response.closes
        assert conn.closed and b"boom" not in conn.transport.data
        assert any(r.getMessage() == "Exception in ASGI application" for r in caplog.records)

    run(app, scenario)


def test_exception_after_the_response_started_cuts_the_connection(run):
    async def app(scope, receive, send):
        await start(send, 200, [(b"content-length", b"100")])
        await body(send, b"partial", more=True)
        raise RuntimeError("boom")

    async def scenario(conn):
        conn.feed(get())
        await conn.settle()
        [response] = conn.responses()
        assert response.status == 200 and response.body == b"partial" and not response.complete
        assert conn.closed and b"500" not in conn.transport.data

    run(app, scenario)


def test_exception_after_a_streamed_start_leaves_the_chunked_body_unfinished(run):
    async def app(scope, receive, send):
        await start(send)
        await body(send, b"abc", more=True)
        raise RuntimeError("boom")

    async def scenario(conn):
        conn.feed(get())
        await conn.settle()
        [response] = conn.responses()
        assert response.chunked and response.body == b"abc" and not response.complete
        assert conn.closed

    run(app, scenario)


@pytest.mark.parametrize("kind", ["no-response", "start-only"])
def test_app_returning_without_a_response(run, kind, caplog):
    async def app(scope, receive, send):
        if kind == "start-only":
            await start(send)

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.status == 500 and response.closes and conn.closed
        expected = {"no-response": "returned without starting a response",
                    "start-only": "returned without completing its response"}[kind]
        assert any(expected in r.getMessage() for r in caplog.records)

    run(app, scenario)


def test_invalid_response_header_is_500(run):
    async def app(scope, receive, send):
        await start(send, 200, [(b"x-test", b"a\r\nset-cookie: evil=1")])
        await body(send, b"should not be sent")

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.status == 500 and b"evil" not in conn.transport.data and conn.closed

    run(app, scenario)


# -- body over- and under-run --------------------------------------------------------------------
@pytest.mark.parametrize("messages", [[b"abc"], [b"ab", b"c"]], ids=["one-message", "two-messages"])
def test_body_shorter_than_content_length_closes(run, messages, caplog):
    async def app(scope, receive, send):
        await start(send, 200, [(b"content-length", b"10")])
        for i, part in enumerate(messages):
            await body(send, part, more=i < len(messages) - 1)

    async def scenario(conn):
        conn.feed(get() + get())
        await conn.settle()
        [response] = conn.responses()  # and nothing for the second request
        assert response.body == b"abc" and not response.complete
        assert conn.closed and not conn.transport.late
        assert any("shorter than its content-length" in r.getMessage() for r in caplog.records)

    run(app, scenario)


@pytest.mark.parametrize("messages", [[b"abcdefghij"], [b"ab", b"cdefghij"]], ids=["one-message", "two-messages"])
def test_body_longer_than_content_length_is_cut_and_closes(run, messages, caplog):
    async def app(scope, receive, send):
        await start(send, 200, [(b"content-length", b"3")])
        for i, part in enumerate(messages):
            await body(send, part, more=i < len(messages) - 1)

    async def scenario(conn):
        conn.feed(get() + get())
        await conn.settle()
        head, _, rest = conn.transport.data.partition(b"\r\n\r\n")
        assert rest == b"abc"  # never more than declared, and nothing for the second request
        assert conn.closed and not conn.transport.late
        assert any("longer than its content-length" in r.getMessage() for r in caplog.records)

    run(app, scenario)


# -- disconnects --------------------------------------------------------------------------------
def test_app_sees_http_disconnect_when_the_client_goes(run):
    received = []

    async def app(scope, receive, send):
        await read_all(receive)
        received.append(await receive())  # waits until the client goes away

    async def scenario(conn):
        await conn.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert received == [] and conn.transport.data == b""
        conn.transport.disconnect()
        await conn.settle()
        assert received == [{"type": "http.disconnect"}]

    run(app, scenario)


def test_eof_tells_the_app_and_still_sends_a_finished_response(run):
    received = []

    async def app(scope, receive, send):
        await hello(scope, receive, send)  # made at once, held to the end of the loop iteration
        received.append(await receive())

    async def scenario(conn):
        conn.feed(get())
        conn.feed_eof()  # in the same iteration
        await conn.settle()
        [response] = conn.responses()
        assert response.body == HELLO and conn.closed
        assert received == [{"type": "http.disconnect"}]

    run(app, scenario)


def test_send_after_disconnect_raises_client_disconnected(run):
    outcome = []

    async def app(scope, receive, send):
        await start(send)
        await body(send, b"tick", more=True)
        await asyncio.sleep(0.02)
        try:
            await body(send, b"tock", more=True)
        except ClientDisconnected:
            outcome.append("ClientDisconnected")

    async def scenario(conn):
        conn.feed(get())
        await conn.settle()
        conn.transport.disconnect()
        await asyncio.sleep(0.05)
        assert outcome == ["ClientDisconnected"]
        assert b"tock" not in conn.transport.data + b"".join(conn.transport.late)

    run(app, scenario)


def test_keep_alive_timeout_closes_an_idle_connection(run):
    async def scenario(conn):
        await conn.request(get())
        assert not conn.closed
        await asyncio.sleep(0.12)
        assert conn.closed

    run(hello, scenario, timeout_keep_alive=0.05)


# -- back-pressure ------------------------------------------------------------------------------
def test_request_body_pauses_reading_until_the_app_reads(run):
    gate = []
    size, piece = 256 * 1024, 16 * 1024

    async def app(scope, receive, send):
        await gate[0]
        await echo(scope, receive, send)

    async def scenario(conn):
        gate.append(asyncio.get_running_loop().create_future())
        fed = 0

        def feed_while_reading():  # a real transport delivers nothing while reading is paused
            nonlocal fed
            while conn.transport.reading and fed < size:
                conn.feed(b"z" * piece)
                fed += piece

        conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        feed_while_reading()
        await conn.settle()
        assert not conn.transport.reading
        assert fed <= 64 * 1024 + piece, fed  # what is buffered for an app that does not read is bounded
        gate[0].set_result(None)
        while fed < size:
            await conn.settle()
            assert conn.transport.reading  # the app took the body: reading again
            feed_while_reading()
        await conn.settle()
        [response] = conn.responses()
        assert response.body == b"z" * size

    run(app, scenario)


def test_send_waits_while_the_write_buffer_is_full(run):
    progress = []

    async def app(scope, receive, send):
        await start(send)
        await body(send, b"one", more=True)
        progress.append("one")
        await body(send, b"two")
        progress.append("two")

    async def scenario(conn):
        conn.transport.fill_write_buffer()
        conn.feed(get())
        await conn.settle()
        assert progress == [] and conn.transport.data == b""
        conn.transport.drain_write_buffer()
        await conn.settle()
        assert progress == ["one", "two"]
        [response] = conn.responses()
        assert response.body == b"onetwo" and response.complete

    run(app, scenario)


# -- default headers ----------------------------------------------------------------------------
def test_date_header_comes_from_the_cache(run, monkeypatch):
    import fastserve.state

    calls = []
    real = fastserve.state.formatdate

    def counting_formatdate(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastserve.state, "formatdate", counting_formatdate)

    async def scenario(conn):
        before = len(calls)
        responses = await conn.request(get() * 20)
        assert len(responses) == 20 and len({r.header(b"date") for r in responses}) == 1
        assert len(calls) == before  # no date formatted per response
        conn.state.refresh_default_headers()  # what the server's once-a-second timer calls
        assert len(calls) == before + 1

    run(hello, scenario)


# -- more of tests/test_http.py, in process ------------------------------------------------------
def test_large_single_body_gets_content_length(run):
    blob = bytes(range(256)) * 256  # 64 KiB: head and body written apart (above the join limit)

    async def app(scope, receive, send):
        await start(send)
        await body(send, blob)

    async def scenario(conn):
        responses = await conn.request(get() + get())
        assert [r.body for r in responses] == [blob, blob]
        assert responses[0].header(b"content-length") == b"65536"
        assert responses[0].header(b"transfer-encoding") is None and not conn.closed

    run(app, scenario)


def test_unread_body_does_not_break_keep_alive(run):
    async def scenario(conn):
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789" + get(b"/", b"Connection: close\r\n")
        conn.feed(request)
        await conn.settle()
        responses = conn.responses()
        assert [r.status for r in responses] == [200, 200] and conn.closed

    run(hello, scenario)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize(
    "fields",
    ["", "Connection: close\r\n", "Connection: keep-alive\r\n", "Connection: Keep-Alive, close\r\n",
     "Proxy-Connection: keep-alive\r\n", "Connection: upgrade\r\nProxy-Connection: close\r\n"],
)
def test_http_version_exact_whatever_the_connection_fields(run, version, fields):
    # The httptools adapter infers 1.1 from llhttp's keep-alive verdict unless such fields
    # could have swayed it; the scope must always carry the version the client sent.
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["http_version"])
        await hello(scope, receive, send)

    async def scenario(conn):
        [response] = await conn.request(f"GET / HTTP/{version}\r\nHost: x\r\n{fields}\r\n".encode())
        assert seen == [version]
        connection = " ".join(line.lower() for line in fields.split("\r\n") if line.lower().startswith("connection:"))
        keeps_alive = "close" not in connection and (version == "1.1" or "keep-alive" in connection)
        assert response.closes != keeps_alive
        await conn.settle()
        assert conn.closed != keeps_alive

    run(app, scenario)


@pytest.mark.parametrize("value", [b"a\r\nset-cookie: evil=1", b"a\nb", b"a\rb", b"a\x00b"], ids=["crlf", "lf", "cr", "nul"])
def test_response_header_injection_refused(run, value, caplog):
    async def app(scope, receive, send):
        if scope["path"] == "/twin":  # the same bytes as two honest headers, first: the cache must not mix them up
            await start(send, 200, [(b"x-test", b"a"), (b"set-cookie", b"evil=1")])
        else:
            await start(send, 200, [(b"x-test", value)])
        await body(send, b"should not be sent")

    async def scenario(conn):
        twin = Connection(app, conn.config.http)
        [honest] = await twin.request(get(b"/twin"))
        assert honest.status == 200
        [response] = await conn.request(get())
        assert response.status == 500 and b"should not be sent" not in conn.transport.data
        assert b"evil" not in conn.transport.data and conn.closed
        assert any("CR, LF or NUL" in r.getMessage() for r in caplog.records)

    run(app, scenario)


def test_invalid_response_header_name_refused(run, caplog):
    async def app(scope, receive, send):
        await start(send, 200, [(b"x test:", b"v")])
        await body(send, b"should not be sent")

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.status == 500 and b"should not be sent" not in conn.transport.data
        assert any("invalid response header name" in r.getMessage() for r in caplog.records)

    run(app, scenario)


@pytest.mark.parametrize("shape", ["tuple", "lists", "generator"])
def test_response_headers_in_any_iterable_shape(run, shape):
    async def app(scope, receive, send):
        pairs = [(b"x-shape", shape.encode()), (b"content-length", b"5")]
        headers = {"tuple": tuple(pairs), "lists": [list(p) for p in pairs], "generator": (p for p in pairs)}[shape]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await body(send, b"shape")

    async def scenario(conn):
        responses = await conn.request(get() * 3)  # the first parses the headers, the others may hit the cache
        for r in responses:
            assert r.body == b"shape" and r.header(b"x-shape") == shape.encode()
            assert r.headers_named(b"content-length") == [b"5"]

    run(app, scenario)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_bytes_like_bodies_and_header_values_are_sent(run, kind, streamed):
    # ASGI says bytes; a bytes-like is sent as well, in every path (the compiled build checks
    # the annotations of the modules it compiles: none may say bytes where an app's value goes)
    async def app(scope, receive, send):
        await start(send, 200, [(b"x-kind", kind(b"like")), (b"content-length", kind(b"10"))])
        if streamed:
            await body(send, kind(b"12345"), more=1)  # (a truthy more_body that is not a bool)
            await body(send, kind(b"67890"), more=0)
        else:
            await body(send, kind(b"1234567890"))

    async def scenario(conn):
        responses = await conn.request(get() * 2)
        assert [(r.status, r.body, r.header(b"x-kind")) for r in responses] == [(200, b"1234567890", b"like")] * 2

    run(app, scenario)


def test_messages_as_other_mappings_are_read_and_a_type_that_is_no_str_is_refused(run, caplog):
    # (both builds alike: the compiled one checks annotations, and none may say dict or str there)
    from types import MappingProxyType

    async def app(scope, receive, send):
        if scope["path"] == "/mapping":
            await send(MappingProxyType({"type": "http.response.start", "status": 200, "headers": []}))
            await send(MappingProxyType({"type": "http.response.body", "body": b"mapped"}))
        else:
            await start(send)
            await send({"type": 5})

    async def scenario(conn):
        [mapped] = await conn.request(get(b"/mapping"))
        assert (mapped.status, mapped.body) == (200, b"mapped")
        [failed] = await conn.request(get(b"/int-type"))
        assert failed.status == 500  # (the head waits for the first body message: none went out)
        assert any("expected ASGI message 'http.response.body', got 5" in r.getMessage() for r in caplog.records)

    run(app, scenario)


def test_app_headers_kept_and_defaults_overridable(run):
    async def app(scope, receive, send):
        await start(send, 200, [(b"x-dup", b"a"), (b"x-dup", b"b"), (b"Server", b"custom")])
        await body(send, b"ok")

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.headers_named(b"x-dup") == [b"a", b"b"]
        assert response.headers_named(b"server") == [b"custom"]
        assert response.header(b"date")

    run(app, scenario)


def test_send_after_complete_is_ignored(run):
    # ASGI HTTP spec: once more_body is False, "any further messages on the channel will be ignored".
    errors = []

    async def app(scope, receive, send):
        await hello(scope, receive, send)
        try:
            await body(send, b"more")
        except RuntimeError as exc:
            errors.append(str(exc))

    async def scenario(conn):
        [response] = await conn.request(get())
        assert response.body == HELLO and b"more" not in conn.transport.data
        assert errors == [] and not conn.ended

    run(app, scenario)


def test_input_after_a_refusal_is_read_and_dropped_even_in_large_reads(run):
    # A refusal in a read larger than the pipelining ration (FEED_DIRECT) once left the rest of the
    # read as a backlog with reading paused: the lingering close then saw no input, gave up, and
    # the client still sending got a reset instead of reading its 400.
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await hello(scope, receive, send)

    async def scenario(conn):
        junk = get(b"/never") * 200  # well over FEED_DIRECT
        conn.feed(b"GET / HTTP/1.1\r\n\r\n" + junk)  # no Host: 400
        await conn.settle()
        [response] = conn.responses()
        assert response.status == 400 and conn.ended and not conn.closed
        for _ in range(5):
            assert conn.transport.reading  # lingering: still reading, to drop what comes
            conn.feed(junk)
            await conn.settle()
        assert calls == [] and conn.transport.data.count(b"HTTP/1.1 ") == 1

    run(app, scenario)
