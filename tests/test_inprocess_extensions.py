"""ASGI extensions on HTTP/1.1 in process: http.response.trailers and http.response.early_hint,
exact bytes on both parsers and both loops (tests/harness.py). End to end: test_extensions.py."""

from __future__ import annotations

import pytest

from fastserve.asgi.errors import InvalidResponse

from .harness import IMPL_IDS, IMPLS, connection_runner

TE_TRAILERS = b"TE: trailers\r\n"
EARLY_HINT_BYTES = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nlink: </b.js>\r\n\r\n"


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def run(request):
    return connection_runner(*request.param)


def get(extra: bytes = b"", version: bytes = b"1.1", method: bytes = b"GET") -> bytes:
    return b"%s / HTTP/%s\r\nHost: x\r\n%s\r\n" % (method, version, extra)


async def exchange(conn, data: bytes, head_requests=None):
    """Feed ``data``; (the responses parsed, the raw bytes written)."""
    conn.feed(data)
    await conn.settle()
    raw = conn.transport.data
    return conn.responses(head_requests), raw


def after_head(data: bytes) -> bytes:
    """What follows the first response head."""
    return data.split(b"\r\n\r\n", 1)[1]


def start(headers=(), trailers=True, status=200):
    return {"type": "http.response.start", "status": status, "headers": list(headers), "trailers": trailers}


def body(data=b"", more=False):
    return {"type": "http.response.body", "body": data, "more_body": more}


def trailers(headers, more=False):
    return {"type": "http.response.trailers", "headers": headers, "more_trailers": more}


def hint(*links):
    return {"type": "http.response.early_hint", "links": list(links)}


def scripted(*messages, errors=None):
    """An app sending ``messages``; an exception is recorded in ``errors`` (if given), then raised."""

    async def app(scope, receive, send):
        try:
            for message in messages:
                await send(message)
        except Exception as exc:
            if errors is not None:
                errors.append(exc)
            raise

    return app


STREAMED_WITH_TRAILERS = scripted(
    start([(b"trailer", b"x-checksum, x-more")]),
    body(b"ab", more=True),
    body(b"cd"),
    trailers([(b"x-checksum", b"abc")], more=True),
    trailers([(b"x-more", b"1")]),
)


# -- trailers -----------------------------------------------------------------------------------
def test_trailer_section_follows_the_last_chunk_when_the_client_sent_te_trailers(run):
    async def scenario(conn):
        (first, second), data = await exchange(conn, get(TE_TRAILERS) + get(TE_TRAILERS))
        assert first.chunked and first.header(b"trailer") == b"x-checksum, x-more"
        assert after_head(data).startswith(b"2\r\nab\r\n2\r\ncd\r\n0\r\nx-checksum: abc\r\nx-more: 1\r\n\r\nHTTP/1.1 200")
        assert second.trailers == [(b"x-checksum", b"abc"), (b"x-more", b"1")] and second.complete
        assert not conn.closed  # the trailers ended the response; the connection is kept

    run(STREAMED_WITH_TRAILERS, scenario)


@pytest.mark.parametrize("te", [b"", b"TE: gzip\r\n", b"TE: trailersx\r\n"])
def test_trailers_are_dropped_without_te_trailers(run, te):
    async def scenario(conn):
        [response], data = await exchange(conn, get(te))
        assert after_head(data) == b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"
        assert response.body == b"abcd" and response.trailers == [] and not conn.closed

    run(STREAMED_WITH_TRAILERS, scenario)


def test_single_body_message_with_trailers_is_chunked(run):
    app = scripted(start(), body(b"hello"), trailers([(b"x-sum", b"5")]))

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert response.header(b"content-length") is None
        assert after_head(data) == b"5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n"

    run(app, scenario)


def test_empty_body_then_trailers(run):
    app = scripted(start(), body(b""), trailers([(b"grpc-status", b"0")]))

    async def scenario(conn):
        _, data = await exchange(conn, get(TE_TRAILERS))
        assert after_head(data) == b"0\r\ngrpc-status: 0\r\n\r\n"

    run(app, scenario)


def test_http10_client_gets_no_trailers_and_the_close_ends_the_body(run):
    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS, version=b"1.0"))
        assert response.header(b"transfer-encoding") is None
        assert after_head(data) == b"abcd" and conn.closed

    run(STREAMED_WITH_TRAILERS, scenario)


def test_content_length_response_keeps_its_length_and_drops_the_trailers(run):
    # RFC 9112: only the chunked coding carries a trailer section. The app's content-length wins.
    app = scripted(start([(b"content-length", b"4")]), body(b"ab", more=True), body(b"cd"),
                   trailers([(b"x-sum", b"1")]))

    async def scenario(conn):
        [response, again], data = await exchange(conn, get(TE_TRAILERS) + get(TE_TRAILERS))
        assert response.header(b"content-length") == b"4" and not response.chunked
        assert after_head(data).startswith(b"abcdHTTP/1.1 200")
        assert b"x-sum" not in data and again.body == b"abcd"

    run(app, scenario)


def test_head_request_with_trailers_completes_at_the_trailers(run):
    async def scenario(conn):
        [response, again], data = await exchange(conn, get(TE_TRAILERS, method=b"HEAD") * 2, head_requests={0, 1})
        assert response.status == again.status == 200
        assert b"x-checksum: abc" not in data and not conn.closed

    run(STREAMED_WITH_TRAILERS, scenario)


@pytest.mark.parametrize(
    "fields",
    [
        [(b"content-length", b"1")],
        [(b"Transfer-Encoding", b"chunked")],
        [(b"connection", b"close")],
        [(b"host", b"y")],
        [(b"bad name", b"1")],
        [(b"x-a", b"1\r\nx-injected: 1")],
        [(b"x-a", b"\x00")],
        [(b"x-a", "text")],
        [("x-a", b"1")],
        [(b"x-a", b"1", b"2")],
        None,
    ],
)
def test_invalid_trailer_fields_raise_in_the_app_and_cut_the_response(run, fields, caplog):
    errors: list[Exception] = []
    app = scripted(start(), body(b"ab"), trailers(fields), errors=errors)

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        # The head and body are out: the response cannot be completed, so the connection closes.
        assert response.status == 200 and not response.complete and conn.closed
        assert b"x-injected" not in data and not conn.transport.late

    run(app, scenario)
    assert [type(e) for e in errors] == [InvalidResponse]
    assert len([r for r in caplog.records if "Invalid response" in r.getMessage()]) == 1


def test_trailers_before_the_body_ended_are_an_app_error(run):
    streaming_errors: list[Exception] = []
    streaming = scripted(start(), body(b"ab", more=True), trailers([(b"x-a", b"1")]), errors=streaming_errors)

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert response.status == 200 and not response.complete and conn.closed

    run(streaming, scenario)
    assert [type(e) for e in streaming_errors] == [InvalidResponse]

    unsent_errors: list[Exception] = []
    unsent = scripted(start(), trailers([(b"x-a", b"1")]), errors=unsent_errors)

    async def nothing_sent(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert response.status == 500  # nothing was on the wire yet

    run(unsent, nothing_sent)
    assert [type(e) for e in unsent_errors] == [InvalidResponse]


def test_trailers_without_announcing_them_are_an_app_error(run):
    errors: list[Exception] = []
    app = scripted(start(trailers=False), body(b"ab", more=True), trailers([(b"x-a", b"1")]), errors=errors)

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert not response.complete and conn.closed

    run(app, scenario)
    assert [type(e) for e in errors] == [InvalidResponse]


def test_body_after_the_body_ended_is_an_app_error(run):
    errors: list[Exception] = []
    app = scripted(start(), body(b"ab"), body(b"cd"), errors=errors)

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert not response.complete and conn.closed and b"cd" not in data

    run(app, scenario)
    assert [type(e) for e in errors] == [InvalidResponse]


def test_messages_after_the_final_trailers_are_ignored(run):
    # ASGI spec: once more_trailers is False the response is complete, "any further messages on
    # the channel will be ignored".
    errors: list[Exception] = []
    app = scripted(start(), body(b"ab"), trailers([(b"x-a", b"1")]), body(b"late"),
                   trailers([(b"x-b", b"2")]), hint(b"</late>"), {"type": "http.response.bogus"}, errors=errors)

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert response.complete and response.trailers == [(b"x-a", b"1")] and not conn.closed
        assert b"late" not in data

    run(app, scenario)
    assert errors == []


def test_app_returning_before_its_trailers_cuts_the_response(run, caplog):
    app = scripted(start(), body(b"ab"))

    async def scenario(conn):
        [response], data = await exchange(conn, get(TE_TRAILERS))
        assert not response.complete and conn.closed

    run(app, scenario)
    assert any("without completing its response" in r.getMessage() for r in caplog.records)


# -- early hints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("after_start", [False, True])
def test_early_hints_precede_the_final_head(run, after_start):
    messages = [hint(b"</a.css>; rel=preload", b"</b.js>"), start(trailers=False), body(b"ok")]
    if after_start:  # the spec's place: after http.response.start, before the head goes out
        messages[0], messages[1] = messages[1], messages[0]

    async def scenario(conn):
        (early, final), data = await exchange(conn, get())
        assert data.startswith(EARLY_HINT_BYTES)
        assert early.status == 103 and final.status == 200 and final.body == b"ok"

    run(scripted(*messages), scenario)


def test_early_hints_after_the_head_are_dropped(run):
    errors: list[Exception] = []
    app = scripted(start(trailers=False), body(b"a", more=True), hint(b"</a.css>"), body(b"b"), errors=errors)

    async def scenario(conn):
        [response], data = await exchange(conn, get())
        assert response.body == b"ab" and b"103" not in data

    run(app, scenario)
    assert errors == []


def test_early_hints_never_go_to_http10_clients(run):
    app = scripted(hint(b"</a.css>"), start(trailers=False), body(b"ok"))

    async def scenario(conn):
        [response], data = await exchange(conn, get(version=b"1.0"))
        assert response.status == 200 and data.startswith(b"HTTP/1.1 200 OK\r\n")

    run(app, scenario)


@pytest.mark.parametrize("links", [b"</a.css>", "</a.css>", [b"</a\r\nx: 1>"], ["</a.css>"], None, [None]])
def test_invalid_early_hints_raise_in_the_app(run, links):
    outcome: list[str] = []

    async def app(scope, receive, send):
        try:
            await send({"type": "http.response.early_hint", "links": links})
        except InvalidResponse:
            outcome.append("raised")
        await send(start(trailers=False))
        await send(body(b"ok"))

    async def scenario(conn):
        [response], data = await exchange(conn, get())
        assert response.status == 200 and response.body == b"ok"
        assert b"103" not in data

    run(app, scenario)
    assert outcome == ["raised"]


# -- what the scope offers -----------------------------------------------------------------------
def test_scope_offers_trailers_and_early_hints_per_request(run):
    seen = []

    async def app(scope, receive, send):
        seen.append(dict(scope["extensions"]))
        scope["extensions"]["written-by-app"] = {}  # not the next request's
        await send(start(trailers=False))
        await send(body(b"ok"))

    async def scenario(conn):
        _, data = await exchange(conn, get() + get())

    run(app, scenario)
    offered = {"http.response.trailers": {}, "http.response.early_hint": {},
               "http.response.pathsend": {}, "http.response.zerocopysend": {}}
    assert seen == [offered, offered]


@pytest.mark.parametrize("sent_trailers", [False, True])
def test_app_returning_mid_stream_at_shutdown_ends_the_body_with_its_trailers(run, sent_trailers):
    # Told http.disconnect at shutdown, an app that streams (SSE) returns: the body ends properly
    # (as without trailers), with the trailer fields sent so far.
    async def app(scope, receive, send):
        await send(start())
        await send(body(b"event", more=True))
        if sent_trailers:
            await send(body(b""))
            await send(trailers([(b"x-a", b"1")], more=True))
        while (await receive())["type"] != "http.disconnect":
            pass

    async def scenario(conn):
        conn.feed(get(TE_TRAILERS))
        await conn.settle()
        conn.protocol.shutdown()
        await conn.settle()
        [response] = conn.responses()
        assert response.complete and response.body == b"event"
        assert response.trailers == ([(b"x-a", b"1")] if sent_trailers else [])

    run(app, scenario)
