"""fastserve.django.testcases as a project uses them: Django's test runner runs the djsite
project's test module (tests/apps/djsite/chat/tests.py: the plain, static and Channels live-server
test cases, with httpx and the websockets client) in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .helpers import TESTS

pytest.importorskip("django")
pytest.importorskip("channels")

PROJECT = TESTS / "apps" / "djsite"


def test_live_server_test_cases_under_djangos_test_runner():
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "chat", "-v", "2", "--noinput"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=90,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "Ran 15 tests" in report and "\nOK" in report, report
    for case in ("PlainLiveServerTests", "StaticLiveServerTests", "ChannelsLiveServerTests", "ChannelsWithoutStaticTests"):
        assert f"chat.tests.{case}" in report


def test_importing_fastserve_does_not_import_django():
    code = ("import sys, fastserve, fastserve.cli, fastserve.main, fastserve.workers; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'channels')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"


def test_without_asgi_application_setting_djangos_asgi_handler_is_served():
    """tests/apps/plaindjango has no ASGI_APPLICATION: what startproject's asgi.py returns."""
    code = ("import django; django.setup(); "
            "from fastserve.django.application import get_default_application; "
            "print(type(get_default_application()).__name__)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "plaindjango.settings", "PYTHONPATH": str(TESTS / "apps")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "ASGIHandler", result.stderr
