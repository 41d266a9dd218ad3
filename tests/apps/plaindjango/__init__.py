"""A plain Django project (no Channels), as Django 3.0 + daphne users had it in the seed documents:
its ASGI handler refuses WebSocket scopes. Serve: ``fastserve plaindjango.asgi:application --app-dir tests/apps``."""
