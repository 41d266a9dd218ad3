"""TLS, UNIX sockets, inherited file descriptors and proxy headers, on every parser x loop."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys

import httpx
import pytest
import trustme

from .helpers import TESTS, status_of


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    key_path, cert_path, ca_path = folder / "key.pem", folder / "cert.pem", folder / "ca.pem"
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    ca.cert_pem.write_to_path(ca_path)
    return str(key_path), str(cert_path), str(ca_path)


def test_tls_gives_https_scheme(serve, impl, tls_files):
    key, cert, ca = tls_files
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop, "--ssl-keyfile", key, "--ssl-certfile", cert)
    assert server.scheme == "https"
    with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as client:
        scope = client.get(f"https://127.0.0.1:{server.port}/scope").json()
        assert scope["scheme"] == "https"
        assert client.post(f"https://127.0.0.1:{server.port}/echo", content=b"x" * 300_000).content == b"x" * 300_000


def test_tls_plain_http_client_is_not_served(serve, tls_files):
    key, cert, _ = tls_files
    server = serve("apps.basic:app", "--ssl-keyfile", key, "--ssl-certfile", cert)
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not sock.recv(100).startswith(b"HTTP/1.1 200")


def test_unix_domain_socket(serve, impl, tmp_path):
    http, loop = impl
    path = str(tmp_path / "fastserve.sock")
    server = serve("apps.basic:app", "--http", http, "--loop", loop, "--uds", path, wait_for="running on unix socket")
    transport = httpx.HTTPTransport(uds=path)
    with httpx.Client(transport=transport) as client:
        scope = client.get("http://localhost/scope").json()
    assert scope["client"] is None and scope["server"] is None
    server.stop()


def test_fd_binding(impl, tmp_path):
    http, loop = impl
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    script = (
        "import os, sys, subprocess\n"
        f"fd = {sock.fileno()}\n"
        "os.set_inheritable(fd, True)\n"
        f"sys.exit(subprocess.call([sys.executable, '-m', 'fastserve', 'apps.basic:app', '--fd', str(fd), '--http', {http!r}, '--loop', {loop!r}, '--app-dir', {str(TESTS)!r}], pass_fds=(fd,)))\n"
    )
    # The wrapper inherits our bound socket and hands it to fastserve as --fd.
    proc = subprocess.Popen([sys.executable, "-c", script], pass_fds=(sock.fileno(),), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = ""
        while "running on" not in line:
            line = proc.stdout.readline()
            assert line, "server exited"
        assert f":{port}" in line
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"
    finally:
        import os
        import signal
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)
        sock.close()


class TestProxyHeaders:
    def test_trusted_proxy_sets_client_and_scheme(self, basic_server):
        scope = httpx.get(basic_server.url + "/scope", headers={
            "x-forwarded-for": "203.0.113.7, 127.0.0.1", "x-forwarded-proto": "https"}).json()
        assert scope["client"][0] == "203.0.113.7"
        assert scope["scheme"] == "https"

    def test_client_cannot_spoof_past_the_proxy(self, basic_server):
        # Only the hop the trusted proxy appended counts; the client's own claim is left of it.
        scope = httpx.get(basic_server.url + "/scope", headers={
            "x-forwarded-for": "198.51.100.1, 203.0.113.7"}).json()
        assert scope["client"][0] == "203.0.113.7"

    def test_forwarded_header(self, basic_server):
        scope = httpx.get(basic_server.url + "/scope", headers={
            "forwarded": 'for="[2001:db8::1]:4711";proto=https, for=127.0.0.1'}).json()
        assert scope["client"][0] == "2001:db8::1" and scope["scheme"] == "https"

    def test_untrusted_peer_is_ignored(self, serve):
        server = serve("apps.basic:app", "--forwarded-allow-ips", "10.0.0.0/8")
        scope = httpx.get(server.url + "/scope", headers={"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}).json()
        assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"

    def test_no_proxy_headers(self, serve):
        server = serve("apps.basic:app", "--no-proxy-headers")
        scope = httpx.get(server.url + "/scope", headers={"x-forwarded-for": "203.0.113.7"}).json()
        assert scope["client"][0] == "127.0.0.1"

    def test_wildcard_and_env_var(self, serve):
        server = serve("apps.basic:app", env={"FORWARDED_ALLOW_IPS": "*"})
        scope = httpx.get(server.url + "/scope", headers={"x-forwarded-for": "203.0.113.9"}).json()
        assert scope["client"][0] == "203.0.113.9"


def test_http_status_of_raw_helper():
    assert status_of(b"HTTP/1.1 204 No Content\r\n\r\n") == 204


def test_tls_encrypted_key_with_password(serve, tls_files, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key, cert, ca = tls_files
    private_key = serialization.load_pem_private_key(open(key, "rb").read(), password=None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    server = serve("apps.basic:app", "--ssl-keyfile", str(encrypted), "--ssl-certfile", cert,
                   "--ssl-keyfile-password", "s3cret")
    assert httpx.get(f"https://127.0.0.1:{server.port}/", verify=ssl.create_default_context(cafile=ca)).status_code == 200
    wrong = subprocess.run([sys.executable, "-m", "fastserve", "apps.basic:app", "--app-dir", str(TESTS), "--port", "0",
                            "--ssl-keyfile", str(encrypted), "--ssl-certfile", cert, "--ssl-keyfile-password", "nope"],
                           capture_output=True, text=True, timeout=20)
    assert wrong.returncode == 1 and "TLS setup failed" in wrong.stderr and "Traceback" not in wrong.stderr


def test_tls_client_certificates_required(serve, tmp_path):
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("client@example.org")
    paths = {name: tmp_path / f"{name}.pem" for name in ("key", "cert", "ca", "client")}
    server_cert.private_key_pem.write_to_path(paths["key"])
    server_cert.cert_chain_pems[0].write_to_path(paths["cert"])
    ca.cert_pem.write_to_path(paths["ca"])
    client_cert.private_key_and_cert_chain_pem.write_to_path(paths["client"])
    server = serve("apps.basic:app", "--ssl-keyfile", str(paths["key"]), "--ssl-certfile", str(paths["cert"]),
                   "--ssl-ca-certs", str(paths["ca"]), "--ssl-cert-reqs", "2", "--ssl-ciphers", "ECDHE+AESGCM")
    url = f"https://127.0.0.1:{server.port}/"
    anonymous = ssl.create_default_context(cafile=str(paths["ca"]))
    with pytest.raises(httpx.TransportError):  # no client certificate: the handshake is refused
        httpx.get(url, verify=anonymous)
    identified = ssl.create_default_context(cafile=str(paths["ca"]))
    identified.load_cert_chain(str(paths["client"]))
    assert httpx.get(url, verify=identified).text == "Hello, world!"


def test_tls_bad_cipher_string_is_a_startup_error(tls_files):
    key, cert, _ = tls_files
    result = subprocess.run([sys.executable, "-m", "fastserve", "apps.basic:app", "--app-dir", str(TESTS), "--port", "0",
                             "--ssl-keyfile", key, "--ssl-certfile", cert, "--ssl-ciphers", "NO-SUCH-CIPHER"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1 and "TLS setup failed" in result.stderr and "Traceback" not in result.stderr


def test_tls_scope_extension(serve, tmp_path, basic_server):
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("client@example.org")
    for name, blob in (("key", server_cert.private_key_pem), ("cert", server_cert.cert_chain_pems[0]),
                       ("ca", ca.cert_pem), ("client", client_cert.private_key_and_cert_chain_pem)):
        blob.write_to_path(tmp_path / f"{name}.pem")
    server = serve("apps.basic:app", "--ssl-keyfile", str(tmp_path / "key.pem"), "--ssl-certfile", str(tmp_path / "cert.pem"),
                   "--ssl-ca-certs", str(tmp_path / "ca.pem"), "--ssl-cert-reqs", "1")
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    context.load_cert_chain(str(tmp_path / "client.pem"))
    tls = httpx.get(f"https://127.0.0.1:{server.port}/scope", verify=context).json()["extensions"]["tls"]
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(tls["client_cert_chain"]) == 1 and tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert "O=trustme" in tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF
    anonymous = httpx.get(f"https://127.0.0.1:{server.port}/scope", verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem")))
    assert anonymous.json()["extensions"]["tls"]["client_cert_chain"] == []
    # A plain-HTTP connection has no TLS extension at all (ASGI TLS spec).
    assert "tls" not in httpx.get(basic_server.url + "/scope").json().get("extensions", {})
