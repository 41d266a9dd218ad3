"""HTTP/1.1: the request rules, and (as the refactor goes on) the writer, the batcher and the
connection. Imports point one way: the server imports this, this imports ``fastserve.asgi``."""
