"""The ASGI "tls" scope extension: what a TLS connection negotiated, computed once per connection."""

from __future__ import annotations

import ssl
from typing import Any

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TLSInfo:
    """Per-server facts: the server certificate and the IANA ids of the ciphers it may use."""

    def __init__(self, context: ssl.SSLContext, certfile: str | None) -> None:
        self.server_cert = _read_first_certificate(certfile)
        # get_ciphers() ids carry OpenSSL's 0x0300xxxx prefix; the low 16 bits are IANA's value.
        self.cipher_ids = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}

    def extension(self, transport: Any) -> dict[str, Any] | None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        cipher = ssl_object.cipher()
        client_der = ssl_object.getpeercert(binary_form=True)
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(client_der)] if client_der else [],
            "client_cert_name": _subject_name(ssl_object.getpeercert()) if client_der else None,
            "client_cert_error": None,  # a certificate that fails verification ends the handshake
            "tls_version": _TLS_VERSIONS.get(ssl_object.version()),
            "cipher_suite": self.cipher_ids.get(cipher[0]) if cipher else None,
        }


def _read_first_certificate(certfile: str | None) -> str | None:
    if not certfile:
        return None
    with open(certfile, encoding="ascii", errors="replace") as f:
        text = f.read()
    end_marker = "-----END CERTIFICATE-----"
    start, end = text.find("-----BEGIN CERTIFICATE-----"), text.find(end_marker)
    return text[start : end + len(end_marker)] + "\n" if start >= 0 and end > start else None


def _subject_name(certificate: dict | None) -> str | None:
    """RFC 4514 distinguished name: most specific attribute first, special characters escaped."""
    if not certificate or "subject" not in certificate:
        return None
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress",
             "domainComponent": "DC", "streetAddress": "STREET", "userId": "UID"}
    parts = []
    for rdn in reversed(certificate["subject"]):
        parts.append("+".join(f"{names.get(key, key)}={_escape(value)}" for key, value in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    escaped = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped
