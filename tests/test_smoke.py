import httpx


def test_hello(basic_server):
    r = httpx.get(basic_server.url + "/")
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.headers["server"] == "fastserve"
    assert "date" in r.headers
