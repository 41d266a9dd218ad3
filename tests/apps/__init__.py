"""ASGI apps the tests serve (imported by a real fastserve process with --app-dir tests)."""
