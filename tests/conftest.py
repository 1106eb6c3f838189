"""Shared pytest setup: every test runs with its own PICOCHAT_HOME and deterministic torch threads."""

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's ~/.cache/picochat."""
    monkeypatch.setenv("PICOCHAT_HOME", str(tmp_path / "picochat_home"))
    return tmp_path / "picochat_home"
