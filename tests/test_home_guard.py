"""The suite-wide guard of tests/conftest.py: no test can write under the real home."""

import pytest
from conftest import REAL_HOME


def test_the_real_home_cannot_be_written(monkeypatch):
    """The guard itself: with PICOCHAT_HOME dropped and ~ restored, a write under the real home still fails."""
    monkeypatch.delenv("PICOCHAT_HOME")
    monkeypatch.setenv("HOME", str(REAL_HOME))
    with pytest.raises(PermissionError, match="real home"):
        (REAL_HOME / ".cache" / "picochat-guard-check").mkdir(parents=True)
    with pytest.raises(PermissionError, match="real home"):
        (REAL_HOME / "picochat-guard-check.txt").write_text("x")
    assert not (REAL_HOME / "picochat-guard-check.txt").exists()
