"""``--proxy-protocol``: the PROXY protocol header (v1 text or v2 binary) that HAProxy, AWS NLB,
nginx (``proxy_protocol on``) and others send before the client's bytes.

Only peers in ``--forwarded-allow-ips`` are expected to send it; others are served as plain HTTP.
From a trusted peer, the header gives the connection its client (and server) address and, in v2,
whether the client spoke TLS to the proxy. A malformed or missing header closes the connection with
one log line: the bytes cannot be trusted as HTTP. Chosen when the server starts, as a subclass of
the HTTP protocol: without the option no connection pays for it. Spec:
https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from typing import Any

from .asgi.scope import peer_name

logger = logging.getLogger("fastserve.error")

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = struct.Struct("!12sBBH")  # signature, version/command, family/transport, length
V2_ADDRESSES = {0x1: struct.Struct("!4s4sHH"), 0x2: struct.Struct("!16s16sHH")}  # INET, INET6
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_CLIENT_SSL = 0x01
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY protocol header fastserve accepts."""


class ProxyInfo:
    """What a header said: addresses (None: keep the connection's own, e.g. LOCAL or UNKNOWN) and TLS."""

    __slots__ = ("client", "server", "tls")

    def __init__(self, client=None, server=None, tls=None) -> None:
        self.client = client
        self.server = server
        self.tls = tls


def parse_proxy_header(data: bytes) -> tuple[int, ProxyInfo] | None:
    """(bytes consumed, info) for a complete header at the start of ``data``; None if more bytes
    are needed; ProxyHeaderError if it is not a valid header."""
    if data[:1] == b"\r":
        if len(data) < V2_HEADER.size:
            _check_prefix(data[:len(V2_SIGNATURE)], V2_SIGNATURE)
            return None
        return _parse_v2(data)
    if len(data) < len(V1_PREFIX):
        _check_prefix(data, V1_PREFIX)
        return None
    if not data.startswith(V1_PREFIX):
        raise ProxyHeaderError("no PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("v1 header longer than 107 bytes")
        return None
    return end + 2, _parse_v1(data[len(V1_PREFIX):end])


def _check_prefix(data: bytes, prefix: bytes) -> None:
    if not prefix.startswith(data):
        raise ProxyHeaderError("no PROXY protocol header")


def _parse_v1(line: bytes) -> ProxyInfo:
    parts = line.split(b" ")
    if parts[0] == b"UNKNOWN":
        return ProxyInfo()
    if len(parts) != 5 or parts[0] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("malformed v1 header")
    version = 4 if parts[0] == b"TCP4" else 6
    try:
        source, destination = (ipaddress.ip_address(p.decode("ascii")) for p in parts[1:3])
        ports = [_port(p) for p in parts[3:5]]
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError("malformed v1 address or port") from None
    if source.version != version or destination.version != version:
        raise ProxyHeaderError(f"v1 address is not {parts[0].decode()}")
    return ProxyInfo((str(source), ports[0]), (str(destination), ports[1]))


def _port(text: bytes) -> int:
    if not text.isdigit() or (len(text) > 1 and text[:1] == b"0") or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def _parse_v2(data: bytes) -> tuple[int, ProxyInfo] | None:
    signature, version_command, family_transport, length = V2_HEADER.unpack_from(data)
    if signature != V2_SIGNATURE:
        raise ProxyHeaderError("malformed v2 signature")
    if version_command >> 4 != 2 or version_command & 0xF not in (0, 1):
        raise ProxyHeaderError("unsupported v2 version or command")
    end = V2_HEADER.size + length
    if len(data) < end:
        return None
    if version_command & 0xF == 0:  # LOCAL: the proxy's own connection (a health check)
        return end, ProxyInfo()
    family, transport = family_transport >> 4, family_transport & 0xF
    addresses = V2_ADDRESSES.get(family)
    if addresses is None or transport != 1:  # UNSPEC, UNIX or datagram: keep the real addresses
        return end, ProxyInfo()
    if length < addresses.size:
        raise ProxyHeaderError("v2 address block too short")
    source, destination, source_port, destination_port = addresses.unpack_from(data, V2_HEADER.size)
    af = socket.AF_INET if family == 1 else socket.AF_INET6
    info = ProxyInfo((socket.inet_ntop(af, source), source_port), (socket.inet_ntop(af, destination), destination_port))
    info.tls = _tls_from_tlvs(data[V2_HEADER.size + addresses.size:end])
    return end, info


def _tlvs(data: bytes):
    offset = 0
    while offset < len(data):
        if offset + 3 > len(data):
            raise ProxyHeaderError("truncated v2 TLV")
        kind, length = data[offset], int.from_bytes(data[offset + 1:offset + 3], "big")
        value = data[offset + 3:offset + 3 + length]
        if len(value) != length:
            raise ProxyHeaderError("truncated v2 TLV")
        yield kind, value
        offset += 3 + length


def _tls_from_tlvs(data: bytes) -> dict[str, Any] | None:
    """The ASGI "tls" extension from a PP2_TYPE_SSL TLV whose client flag says TLS was used."""
    for kind, value in _tlvs(data):
        if kind != PP2_TYPE_SSL or len(value) < 5 or not value[0] & PP2_CLIENT_SSL:
            continue
        subtypes = dict(_tlvs(value[5:]))
        version = subtypes.get(PP2_SUBTYPE_SSL_VERSION, b"").decode("ascii", "replace")
        name = subtypes.get(PP2_SUBTYPE_SSL_CN)
        return {
            "server_cert": None,
            "client_cert_chain": [],
            "client_cert_name": f"CN={name.decode('utf-8', 'replace')}" if name else None,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(version),
            "cipher_suite": None,
        }
    return None


def proxy_protocol_class(base: type) -> type:
    """``base`` (an HTTPProtocol class) reading a PROXY header first from trusted peers."""

    class ProxyProtocolHTTP(base):
        __slots__ = ("proxy_buffer",)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            trusted = self.client is None or self.client[0] in self.config.trusted_proxies
            self.proxy_buffer = b"" if trusted else None

        def data_received(self, data: bytes) -> None:
            if self.proxy_buffer is None:
                super().data_received(data)
                return
            buffer = self.proxy_buffer + data
            try:
                parsed = parse_proxy_header(buffer)
            except ProxyHeaderError as exc:
                self._refuse_proxy(str(exc), buffer)
                return
            if parsed is None:
                self.proxy_buffer = buffer  # bounded: v1 107 bytes, v2 16 + a 16-bit length
                return
            self.proxy_buffer = None
            consumed, info = parsed
            self._apply_proxy_info(info)
            if len(buffer) > consumed:
                super().data_received(buffer[consumed:])

        def eof_received(self) -> bool:
            if self.proxy_buffer:
                self._refuse_proxy("connection closed inside the header", self.proxy_buffer)
            return super().eof_received()

        def _refuse_proxy(self, problem: str, buffer: bytes) -> None:
            self.proxy_buffer = None
            logger.info("Closing a connection from %s: PROXY protocol header expected (--proxy-protocol): %s; first bytes %r",
                        peer_name(self.client), problem, bytes(buffer[:40]))
            self.transport.close()

        def _apply_proxy_info(self, info: ProxyInfo) -> None:
            template = self.scope_template
            if info.client is not None:
                self.client = template["client"] = info.client
                # X-Forwarded-* are honoured only if the real client is itself a trusted proxy.
                self.trusted_peer = self.config.proxy_headers and info.client[0] in self.config.trusted_proxies
            if info.server is not None:
                self.server = template["server"] = info.server
            if info.tls is not None:
                self.scheme = template["scheme"] = "https"
                self.tls = info.tls

    return ProxyProtocolHTTP



def with_proxy_protocol(base: type, config: Any) -> type:
    return proxy_protocol_class(base) if config.proxy_protocol else base
