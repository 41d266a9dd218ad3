"""The live-server test cases of fastserve.django, used as a project would: httpx for HTTP, the
websockets client for the consumer. Run with ``python manage.py test chat``."""

import asyncio
import json
import os
import time
from pathlib import Path
from unittest import mock

import httpx
from django.db import connection, transaction
from websockets.asyncio.client import connect

from fastserve.django.testcases import (
    ChannelsLiveServerTestCase,
    FastserveLiveServerTestCase,
    StaticLiveServerTestCase,
)

from . import views
from .models import Message

ADMIN_CSS = '/static/admin/css/base.css'
TEXT = '你好! héllo ✓ 🚀'


def echo(url, message):
    async def exchange():
        async with connect(url) as ws:
            await ws.send(json.dumps({'message': message}))
            return json.loads(await ws.recv())

    return asyncio.run(asyncio.wait_for(exchange(), 10))


class SharedDatabaseChecks:
    """Tests every live-server test case runs: the server sees the test's data and the other way
    round, over HTTP and WebSocket."""

    def test_views_see_what_the_test_wrote(self):
        Message.objects.create(text='written by the test')
        response = httpx.get(self.live_server_url + '/messages/')
        self.assertEqual(response.json(), {'messages': ['written by the test']})

    def test_consumer_echoes_and_stores_in_the_test_database(self):
        Message.objects.create(text='first')
        reply = echo(self.live_server_ws_url + '/ws/index/', TEXT)
        self.assertEqual(reply, {'message': TEXT, 'user': 'AnonymousUser', 'stored': 2})
        self.assertEqual(list(Message.objects.order_by('id').values_list('text', flat=True)), ['first', TEXT])

    def test_start_page_opens_the_websocket_path(self):
        response = httpx.get(self.live_server_url + '/')
        self.assertEqual(response.status_code, 200)
        self.assertIn("'/ws/index/'", response.text)
        self.assertEqual(response.headers['server'], 'fastserve')


class PlainLiveServerTests(SharedDatabaseChecks, FastserveLiveServerTestCase):
    def test_file_response_is_sent_by_the_server_with_sendfile(self):
        """mysite/asgi.py has README's one-line change: Django's FileResponse goes out through
        http.response.pathsend, and the server (a thread of this process) sends it with sendfile."""
        sent = []
        sendfile = os.sendfile

        def counting_sendfile(*args):
            sent.append(sendfile(*args))
            return sent[-1]

        with mock.patch('os.sendfile', counting_sendfile):
            response = httpx.get(self.live_server_url + '/download/')
        source = Path(views.__file__).read_bytes()
        self.assertEqual(response.content, source)
        self.assertEqual(response.headers['content-disposition'], 'attachment; filename="views.py"')
        # The server thread records a sendfile() once the call returns, by when the bytes may
        # have reached this thread already: wait for its record (under load it came late).
        deadline = time.monotonic() + 5
        while sum(sent) < len(source) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(sum(sent), len(source))

    def test_in_memory_database_is_shared_as_one_connection(self):
        """As in Django's own live-server tests: the server uses the test's very connection to the
        in-memory database, so it even sees what the test has not committed yet."""
        self.assertTrue(connection.is_in_memory_db())
        with transaction.atomic():
            Message.objects.create(text='not committed yet')
            response = httpx.get(self.live_server_url + '/messages/')
        self.assertEqual(response.json(), {'messages': ['not committed yet']})

    def test_static_files_are_not_served(self):
        self.assertEqual(httpx.get(self.live_server_url + ADMIN_CSS).status_code, 404)


class StaticLiveServerTests(SharedDatabaseChecks, StaticLiveServerTestCase):
    def test_static_files_are_served(self):
        response = httpx.get(self.live_server_url + ADMIN_CSS)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.headers['content-type'].startswith('text/css'))


class ChannelsLiveServerTests(SharedDatabaseChecks, ChannelsLiveServerTestCase):
    def test_static_files_are_served(self):
        self.assertEqual(httpx.get(self.live_server_url + ADMIN_CSS).status_code, 200)


class ChannelsWithoutStaticTests(ChannelsLiveServerTestCase):
    serve_static = False

    def test_static_files_are_not_served(self):
        self.assertEqual(httpx.get(self.live_server_url + ADMIN_CSS).status_code, 404)
