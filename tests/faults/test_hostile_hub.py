"""A hostile hub (the loopback fake) listing paths or content ids that escape the destination folder."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pytest

from mistudio_tui.ml import hub
from tests import hub_server
from tests.hub_server import LoopbackHub, RepoFileEntry

loopback_hub = hub_server.loopback_hub
REPO = "evil/repo"


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "bad_path",
    ["../../escaped.txt", "sub/../../escaped.txt", "ABSOLUTE", "sub\\..\\..\\escaped.txt", "./x", "a//b", "C:/x.txt"],
)
def test_listed_path_outside_the_destination_is_refused(
    loopback_hub: LoopbackHub, tmp_path: Path, bad_path: str
) -> None:
    if bad_path == "ABSOLUTE":
        bad_path = str(tmp_path / "abs-escaped.txt")  # before the fix this file was written
    loopback_hub.add_repo(REPO, {"config.json": b"{}", bad_path: b"pwned"})
    dest = tmp_path / "home" / "models" / "1-evil"
    with pytest.raises(hub.HubTransferError) as err:
        hub.download_repo(REPO, dest, endpoint=loopback_hub.url)
    message = str(err.value)
    assert "\n" not in message and "unsafe file path" in message and repr(bad_path)[1:-1][:40] in message
    assert not any("escaped" in name or "pwned" in name for name in files_under(tmp_path))
    assert not (tmp_path / "abs-escaped.txt").exists()
    assert not (dest / "config.json").exists()  # refused before anything was fetched
    assert not [r for r in loopback_hub.requests if "resolve" in r.path]


class _OddOid(RepoFileEntry):
    @cached_property
    def blob_id(self) -> str:
        return "../../../odd-oid"


def test_content_id_that_is_not_hex_is_refused(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    repo = loopback_hub.add_repo(REPO, {"config.json": b"{}"})
    repo.files["config.json"] = _OddOid("config.json", b"{}", False)
    dest = tmp_path / "dest"
    with pytest.raises(hub.HubTransferError, match=r"malformed content id '\.\./\.\./\.\./odd-oid'"):
        hub.download_repo(REPO, dest, endpoint=loopback_hub.url)
    assert not any("odd-oid" in name for name in files_under(tmp_path))


def test_a_normal_repo_still_downloads(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    loopback_hub.add_repo(REPO, {"config.json": b"{}", "sub/dir/weights.safetensors": b"\0" * 64})
    dest = hub.download_repo(REPO, tmp_path / "dest", endpoint=loopback_hub.url)
    assert {"config.json", "sub/dir/weights.safetensors"} <= files_under(dest)


def test_unsafe_repo_path_rules() -> None:
    assert not hub.unsafe_repo_path("model.safetensors")
    assert not hub.unsafe_repo_path("blocks.8.hook_resid_pre/cfg.json")
    assert not hub.unsafe_repo_path("..hidden/x..y")  # dots inside names are fine
    for bad in ("", "/etc/passwd", "..", "a/../b", "a\\b", "a\0b", "a/", "D:\\x", None):
        assert hub.unsafe_repo_path(bad), bad
