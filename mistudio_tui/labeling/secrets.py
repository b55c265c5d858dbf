"""API keys: read from the environment or a 0600 secrets file, and scrubbed from every message we emit."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mistudio_tui.config import config_dir

REDACTED = "[REDACTED]"
# Credential-shaped strings that are not our key as such (a provider echoing a masked key, a header).
_CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+"),
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{8,}"),
    re.compile(r"(?i)\b(api[-_]?key|access[-_]?token|key)=([^\s&\"']+)"),
)


class InsecureSecretsFile(ValueError):
    """The secrets file can be read by users other than its owner."""


def secrets_path() -> Path:
    """Where API keys are kept when not in the environment: `<config dir>/secrets.json`."""
    return config_dir() / "secrets.json"


def load_secrets(path: Path | None = None) -> dict[str, str]:
    """The name -> value map in the secrets file ({} if there is none); refuses a file others can read."""
    path = Path(path) if path is not None else secrets_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if os.name == "posix" and st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise InsecureSecretsFile(
            f"secrets file {path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"secrets file {path} is not valid JSON (line {exc.lineno}); expected an object") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(
            f'secrets file {path} must be a JSON object of names to strings, e.g. {{"OPENAI_API_KEY": "…"}}'
        )
    return data


def resolve_api_key(api_key_env: str, path: Path | None = None) -> str | None:
    """The key from $`api_key_env`, else from the secrets file under that name; None when neither has one."""
    if not api_key_env:
        return None
    value = os.environ.get(api_key_env, "").strip()
    if value:
        return value
    value = load_secrets(path).get(api_key_env, "").strip()
    return value or None


def store_secret(name: str, value: str, path: Path | None = None) -> Path:
    """Save one key into the secrets file (created 0600, replaced atomically) and return the file's path."""
    if not name.strip():
        raise ValueError("secret name is empty; expected an environment variable name like OPENAI_API_KEY")
    path = Path(path) if path is not None else secrets_path()
    data = load_secrets(path)
    data[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class Redactor:
    """Replaces known secrets and credential-shaped strings in text with [REDACTED]."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """`text` (an error or log line) with known secrets and credential-shaped strings removed."""
        text = self.secrets_only(text)
        for pattern in _CREDENTIAL_PATTERNS:
            text = pattern.sub(_mask, text)
        return text

    def secrets_only(self, text: str) -> str:
        """`text` (e.g. a model's answer) with only the known secrets removed."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def _mask(match: re.Match[str]) -> str:
    if match.re.groups == 1:
        return f"{match.group(1)} {REDACTED}"
    if match.re.groups == 2:
        return f"{match.group(1)}={REDACTED}"
    return REDACTED
