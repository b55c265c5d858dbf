"""API keys: environment first, then a 0600 secrets file; other files refused; redaction of messages."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mistudio_tui.labeling.secrets import (
    REDACTED,
    InsecureSecretsFile,
    Redactor,
    load_secrets,
    resolve_api_key,
    secrets_path,
    store_secret,
)


def test_secrets_file_lives_in_the_config_dir(tmp_path: Path) -> None:
    assert secrets_path() == Path(os.environ["MISTUDIO_CONFIG_DIR"]) / "secrets.json"


def test_environment_wins_then_the_secrets_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    assert resolve_api_key("MY_KEY") is None
    path = store_secret("MY_KEY", "from-file")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_api_key("MY_KEY") == "from-file"
    monkeypatch.setenv("MY_KEY", "from-env")
    assert resolve_api_key("MY_KEY") == "from-env"
    assert resolve_api_key("") is None


def test_store_secret_keeps_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store_secret("A", "1", path)
    store_secret("B", "2", path)
    assert load_secrets(path) == {"A": "1", "B": "2"}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"OPENAI_API_KEY": "sk-should-not-leak-1234"}')
    path.chmod(0o644)
    with pytest.raises(InsecureSecretsFile, match=r"readable by other users \(mode 0644\); run: chmod 600") as info:
        resolve_api_key("OPENAI_API_KEY", path)
    assert "sk-should-not-leak" not in str(info.value)
    path.chmod(0o600)
    assert resolve_api_key("OPENAI_API_KEY", path) == "sk-should-not-leak-1234"


@pytest.mark.parametrize(("text", "message"), [("{nope", "not valid JSON"), ('["a"]', "JSON object of names")])
def test_malformed_secrets_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ValueError, match=message):
        load_secrets(path)


def test_redactor_removes_the_key_and_credential_shapes() -> None:
    key = "abc123-very-secret-value"
    redact = Redactor([key, None])
    assert redact(f"server said: bad key {key}!") == f"server said: bad key {REDACTED}!"
    assert key not in redact(f"Authorization: Bearer {key}")
    assert "sk-proj-****abcd1234" not in redact("Incorrect API key provided: sk-proj-****abcd1234.")
    assert redact("http://h/v1?api_key=zzz&x=1") == f"http://h/v1?api_key={REDACTED}&x=1"
    assert redact.secrets_only(f"NAME: {key}") == f"NAME: {REDACTED}"
    assert redact.secrets_only("tokens like sk-learn-models") == "tokens like sk-learn-models"
