from django.db import models


class Message(models.Model):
    """What the echo consumer received: lets tests see the test database from the server."""

    text = models.TextField()
