"""What the app sees, in no wire format: the request record, the scope, the ASGI state machines,
response-header validation and the declared contracts a wire format implements.

Modules here import nothing from ``fastserve.http1``, ``fastserve.http2``, ``fastserve.websocket``
or ``fastserve.server``: imports point one way, from the wire formats to this core.
"""
