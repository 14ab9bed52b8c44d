"""The proxy key: generated once, private, never a well-known or short value."""

from __future__ import annotations

import stat

import pytest

from serve.state import MASTER_KEY_ENV, MIN_KEY_LENGTH, WELL_KNOWN_KEYS, key_path, master_key


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    return tmp_path


def test_a_generated_key_is_long_random_kept_and_private(home) -> None:
    key = master_key()
    assert key.startswith("sk-") and len(key) >= MIN_KEY_LENGTH
    assert master_key() == key  # kept, not regenerated
    assert stat.S_IMODE(key_path().stat().st_mode) == 0o600
    other = home / "other"
    other.mkdir()
    key_path().rename(other / "kept")
    assert master_key() != key  # a second home gets its own


@pytest.mark.parametrize("bad", [*sorted(WELL_KNOWN_KEYS), "sk-short", "no-sk-prefix-but-long-enough-0000"])
def test_a_weak_key_from_the_environment_is_refused(home, monkeypatch, bad: str) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, bad)
    with pytest.raises(ValueError, match="must start with 'sk-'"):
        master_key()
