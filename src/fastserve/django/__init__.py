"""Django and Channels on fastserve: put ``"fastserve.django"`` first in ``INSTALLED_APPS``.

- ``python manage.py runserver`` then serves the project's ASGI application on fastserve, with
  Django's banner, checks, flags and static files, and a reload that keeps the listening socket
  (``management/commands/runserver.py``);
- ``fastserve.django.testcases`` has live-server test cases for Django and Channels
  (``FastserveLiveServerTestCase``, ``StaticLiveServerTestCase``, ``ChannelsLiveServerTestCase``).

Importing ``fastserve`` never imports this package, so Django and Channels stay optional.
"""
