"""plaindjango/asgi.py with the one-line change README "Django and Channels" documents: Django's
ASGI handler as fastserve.django.handler subclasses it (a FileResponse goes out with pathsend)."""

import os

from fastserve.django.handler import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plaindjango.settings")
application = get_asgi_application()
