"""Client address and scheme from proxy headers, used only when the peer is a trusted proxy.

Each proxy appends the address it saw, so the list is read from the right: the first hop that is
not itself a trusted proxy is the client. Anything left of it was written by the client and is not
believed.
"""

from __future__ import annotations

from typing import Any

_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def forwarded_client(
    headers: dict[bytes, bytes], client: Any, scheme: str, trusted: Any
) -> tuple[Any, str]:
    forwarded = headers.get(b"forwarded")
    if forwarded is not None:
        hops = _parse_forwarded(forwarded.decode("latin-1"))
    else:
        hops = [{"for": item.strip()} for item in headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",")]
        protos = headers.get(b"x-forwarded-proto")
        if protos is not None and hops:
            hops[-1]["proto"] = protos.decode("latin-1").split(",")[-1].strip()
        elif protos is not None:
            hops = [{"proto": protos.decode("latin-1").split(",")[-1].strip()}]
    hops = [hop for hop in hops if hop.get("for") or hop.get("proto")]
    if not hops:
        return client, scheme
    chosen = hops[0]
    for hop in reversed(hops):
        chosen = hop
        host = _strip_port(hop.get("for", ""))
        if host not in trusted or not host:
            break
    proto = (chosen.get("proto") or hops[-1].get("proto") or "").lower()
    scheme = _SCHEMES.get(proto, scheme)
    host = _strip_port(chosen.get("for", ""))
    if host and host.lower() != "unknown" and not host.startswith("_"):
        client = (host, 0)
    return client, scheme


def _parse_forwarded(value: str) -> list[dict[str, str]]:
    hops = []
    for element in value.split(","):
        pairs = {}
        for pair in element.split(";"):
            key, sep, val = pair.partition("=")
            if sep:
                pairs[key.strip().lower()] = val.strip().strip('"')
        hops.append(pairs)
    return hops


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [2001:db8::1]:4711
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:  # 192.0.2.1:4711
        return host.split(":", 1)[0]
    return host
