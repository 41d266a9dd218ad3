"""HTTP/1.1 request rules as pure functions (http1/semantics.py) and the scope built from their
result (asgi/scope.py): no connection, no loop. End-to-end behaviour is covered by
test_bad_input.py, test_smuggling.py and the parser parity fuzzers; these pin the contract."""

from __future__ import annotations

import pytest

from fastserve.asgi.request import UNKNOWN_LENGTH
from fastserve.asgi.scope import connection_template, http_scope
from fastserve.http1.connection import H1Cycle
from fastserve.http1.errors import BadRequest
from fastserve.http1.semantics import H1Head, accepts_trailers, request_head, split_target

HOST = (b"host", b"example.com")
CLIENT = ("10.0.0.1", 5000)


class ExactParser:
    """Stands in for the parser adapter: reports the version as parsed."""

    def __init__(self, exact: str = "1.1") -> None:
        self.exact = exact
        self.asked = 0

    def confirm_http_version(self, reported: str) -> str:
        self.asked += 1
        return self.exact


def head(method=b"GET", target=b"/", version="1.1", headers=(HOST,), trusted=False, parser=None, record=H1Head):
    return request_head(method, target, version, list(headers), CLIENT, "http", trusted, parser or ExactParser(version), record)


def test_a_plain_get():
    h = head(target=b"/a%20b?x=1")
    assert (h.method, h.raw_path, h.path, h.query_string) == ("GET", b"/a%20b", "/a b", b"x=1")
    assert h.keep_alive and not h.expect_100 and not h.is_head and h.body_left == 0
    assert (h.client, h.scheme, h.upgrade, h.forwarded) == (CLIENT, "http", False, None)
    assert type(h) is H1Head


def test_keep_alive_follows_version_and_connection():
    assert not head(version="1.0", headers=()).keep_alive
    assert head(version="1.0", headers=[(b"connection", b"keep-alive")]).keep_alive
    assert not head(headers=[HOST, (b"connection", b"close")]).keep_alive


def test_a_keep_alive_token_asks_the_parser_for_the_exact_version():
    parser = ExactParser("1.0")
    h = head(version="1.1", headers=[(b"connection", b"keep-alive")], parser=parser)
    assert parser.asked == 1 and h.http_version == "1.0" and h.keep_alive


def test_body_framing():
    assert head(method=b"POST", headers=[HOST, (b"content-length", b"12")]).body_left == 12
    assert head(method=b"POST", headers=[HOST, (b"transfer-encoding", b"chunked")]).body_left == UNKNOWN_LENGTH
    assert head(method=b"HEAD").is_head
    assert head(headers=[HOST, (b"expect", b"100-Continue")]).expect_100


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"method": b"BREW"}, "method"),
        ({"method": b"PRI", "target": b"*", "version": "2.0"}, "HTTP/2"),
        ({"headers": ()}, "Missing Host"),
        ({"headers": (HOST, HOST)}, "Multiple Host"),
        ({"headers": (HOST, (b"content-length", b"1"), (b"content-length", b"1"))}, "Multiple Content-Length"),
        ({"headers": (HOST, (b"content-length", b"1"), (b"transfer-encoding", b"chunked"))}, "together"),
        ({"headers": (HOST, (b"transfer-encoding", b"gzip, chunked"))}, "Transfer-Encoding"),
        ({"version": "1.0", "headers": ((b"transfer-encoding", b"chunked"),)}, "Transfer-Encoding"),
        ({"version": "0.9"}, "version"),
        ({"target": "/é".encode()}, "target"),
    ],
)
def test_bad_requests(kwargs, reason):
    with pytest.raises(BadRequest) as caught:
        head(**kwargs)
    assert caught.value.status == 400 and reason in caught.value.reason


def test_websocket_upgrade_needs_both_fields():
    upgrade = (b"upgrade", b"websocket")
    assert head(headers=[HOST, upgrade, (b"connection", b"keep-alive, Upgrade")]).upgrade
    assert not head(headers=[HOST, upgrade, (b"connection", b"upgrades")]).upgrade
    assert not head(headers=[HOST, (b"connection", b"upgrade")]).upgrade


def test_proxy_headers_are_collected_only_from_a_trusted_peer():
    forwarded = (b"x-forwarded-for", b"1.2.3.4")
    assert head(headers=[HOST, forwarded]).forwarded is None
    assert head(headers=[HOST, forwarded], trusted=True).forwarded == {b"x-forwarded-for": b"1.2.3.4"}


def test_targets_other_than_origin_form():
    assert split_target(b"http://example.com/p?q") == (b"/p", b"q")
    assert split_target(b"http://example.com") == (b"/", b"")
    assert split_target(b"*") == (b"*", b"")


def test_another_record_class_carries_the_request_on():
    # (the connection's: its cycle is the request record, one object per request)
    h = head(record=H1Cycle)
    assert type(h) is H1Cycle and h.path == "/" and h.keep_alive is True


class _State:
    asgi_info = {"version": "3.0", "spec_version": "2.4"}
    app_state = {"shared": 1}


def test_the_scope_from_a_head():
    template = connection_template(("127.0.0.1", 8000), CLIENT, "http", "/root")
    h = head(method=b"POST", target=b"/p?q=1", headers=[HOST, (b"content-length", b"0")])
    scope = http_scope(h, template, _State, None)
    assert scope == {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "server": ("127.0.0.1", 8000), "client": CLIENT, "scheme": "http", "method": "POST",
        "root_path": "/root", "path": "/p", "raw_path": b"/p", "query_string": b"q=1",
        "headers": [HOST, (b"content-length", b"0")], "state": {"shared": 1}, "extensions": {},
    }
    # Per request: what one app writes into them is not the next one's.
    assert scope["asgi"] is not _State.asgi_info and scope["state"] is not _State.app_state
    assert template["path"] == ""  # the template itself is untouched


def test_the_scope_takes_client_and_scheme_from_trusted_proxy_headers_and_offers_tls():
    template = connection_template(None, CLIENT, "http", "")
    h = head()
    h.forwarded, h.client, h.scheme = {b"x-forwarded-proto": b"https"}, ("1.2.3.4", 0), "https"
    scope = http_scope(h, template, _State, {"server_cert": None})
    assert (scope["client"], scope["scheme"]) == (("1.2.3.4", 0), "https")
    assert scope["extensions"] == {"tls": {"server_cert": None}}


@pytest.mark.parametrize(
    ("headers", "accepts"),
    [
        ([(b"te", b"trailers")], True),
        ([(b"te", b"gzip;q=0.5, Trailers")], True),
        ([(b"te", b"deflate"), (b"te", b" trailers ")], True),
        ([], False),
        ([(b"te", b"gzip")], False),
        ([(b"te", b"trailersx")], False),
        ([(b"x-te", b"trailers")], False),
    ],
)
def test_te_trailers_is_read_from_the_request_headers(headers, accepts):
    assert accepts_trailers([HOST, *headers]) is accepts
