"""A minimal Django project with one view, served through Django's ASGI handler."""
