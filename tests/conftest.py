"""Shared test setup: every test runs on the reference (numpy) backend unless it
asks otherwise, whatever FASTMLP_BACKEND the developer has exported."""

import pytest


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    monkeypatch.delenv("FASTMLP_BACKEND", raising=False)
