"""Bad values and broken databases end a command with one line (never a traceback), and lose or leave nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee
import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db import connection
from mistudio_tui.db.models import FeatureLabel, Job, Training
from tests.faults.seeded_home import seed


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def run(argv: list[str]) -> int:
    """main's exit status, also when argparse exits (a usage error)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--lr", "nan"], "error: --lr must be a finite number, got nan", 1),
        (["--lr=inf"], "error: --lr must be a finite number, got inf", 1),
        (["--lr", "-1"], "error: --lr must be positive", 1),
        # named by the flag the user typed, not the config key (l1_coefficient)
        (["--arch", "relu", "--l1", "nan"], "error: --l1 must be a finite number, got nan", 1),
        (["--k", "1000"], "error: --k must be between 1 and d_sae=64, got 1000", 1),  # SAEConfig says it, once
        (["--tokens", "1e999"], "'1e999' is not a finite count", 2),
        (["--nproc", "0"], "--nproc must be at least 1", 2),
    ],
)
def test_bad_training_values_are_refused_before_any_row(capsys, mistudio_home: Path, args, message, code) -> None:
    seed(mistudio_home)
    assert run(["train", "--activations", "acts", "--device", "cpu", *args]) == code
    assert message in one_line(capsys)
    assert [t.name for t in Training.select()] == ["sae"]  # no pending or failed run left behind
    assert Job.select().count() == 0


@pytest.mark.parametrize("argv", [["datasets", "list"], []], ids=["command", "tui"])
def test_a_file_that_is_not_a_database_is_named_and_left_alone(capsys, mistudio_home: Path, argv) -> None:
    mistudio_home.mkdir(parents=True)
    junk = bytes(range(256)) * 16
    (mistudio_home / "mistudio.db").write_bytes(junk)
    assert main(argv) == 1
    line = one_line(capsys)
    assert "is not a miStudio database" in line and str(mistudio_home / "mistudio.db") in line
    assert (mistudio_home / "mistudio.db").read_bytes() == junk


def test_a_schema_newer_than_this_version_says_upgrade(capsys, mistudio_home: Path) -> None:
    seed(mistudio_home)
    connection.close_database()
    with sqlite3.connect(mistudio_home / "mistudio.db") as db:
        db.execute("INSERT INTO schema_migration (name, applied) VALUES ('0999_future', '2030-01-01')")
    assert main(["trainings", "list"]) == 1
    assert "0999_future" in one_line(capsys)
    with sqlite3.connect(mistudio_home / "mistudio.db") as db:
        assert db.execute("SELECT name FROM training").fetchall() == [("sae",)]


def test_a_database_held_by_another_writer_past_the_wait_is_one_line(
    capsys, mistudio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(mistudio_home)
    assert main(["labels", "set", "fs", "1", "--semantic", "kept"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(connection.PRAGMAS, "busy_timeout", 200)
    holder = sqlite3.connect(mistudio_home / "mistudio.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert main(["labels", "set", "fs", "2", "--semantic", "lost?"]) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "stayed busy" in one_line(capsys)
    assert [(lb.feature_index, lb.semantic) for lb in FeatureLabel.select()] == [(1, "kept")]


def test_a_disk_io_error_is_one_line(capsys, mistudio_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(mistudio_home)
    from mistudio_tui.db import features as fq

    def failing_disk(*args: object, **kwargs: object) -> None:
        raise peewee.OperationalError("disk I/O error")

    monkeypatch.setattr(fq, "add_label", failing_disk)
    assert main(["labels", "set", "fs", "1", "--semantic", "x"]) == 1
    assert "disk I/O error on the database" in one_line(capsys)
