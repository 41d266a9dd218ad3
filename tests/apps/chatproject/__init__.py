"""A small Django Channels project: the seed documents' setup, served by fastserve.

``ProtocolTypeRouter({"http": get_asgi_application(), "websocket": AuthMiddlewareStack(URLRouter(...))})``
with an ``IndexConsumer`` JSON echo at ``ws/index/``, a group chat at ``ws/chat/<room>/``, the
seed's page at ``/`` (its JavaScript opens ``ws://<host>/ws/index/``) and ``/pid/``.

Serve it (from the repository root)::

    fastserve chatproject.asgi:application --app-dir tests/apps

Environment:

- ``REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``): use ``channels_redis`` as the channel layer,
  so the group chat works across processes (``--workers N``, Gunicorn). Without it the in-memory
  layer is used, which only reaches consumers in the same process.
- ``DJANGO_SETTINGS_MODULE`` defaults to ``chatproject.settings``; ``DJANGO_DEBUG=1`` turns on DEBUG.

Chat messages are JSON ``{"message": ...}``; what the consumers send back also names the process
that received the message from the client (``sender_pid``) and the one that delivered it
(``receiver_pid``), so a scale-out test can see a message cross workers.
"""
