"""The one process supervisor: real spawned children that report, fail, die by a signal, ignore SIGTERM, close early."""

from __future__ import annotations

import inspect
import os
import re
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

import mistudio_tui
from mistudio_tui.supervisor import CHILD_END, Child, describe_exit, new_event, stop_all, wait_any


# --- child bodies (module level, so a spawned child can import them) ---------------------------------------------
def send_then_exit(tag: str, conn: Connection, count: int, code: int) -> None:
    for i in range(count):
        conn.send((tag, i))
    conn.close()
    os._exit(code)


def kill_self(conn: Connection, signum: int) -> None:
    conn.send("dying")
    os.kill(os.getpid(), signum)
    time.sleep(30)


def ignore_sigterm(conn: Connection) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn.send("ready")
    time.sleep(60)


def close_early_then_wait(conn: Connection, event: object) -> None:
    conn.send("bye")
    conn.close()
    event.wait(30)  # type: ignore[attr-defined]


def echo(conn: Connection) -> None:
    while (message := conn.recv()) is not None:
        conn.send(message * 2)


# --- helpers ---------------------------------------------------------------------------------------------------------
def collect(child: Child, timeout: float = 30.0) -> list[object]:
    """Everything the child sends until its pipe is at EOF and its process has exited."""
    received: list[object] = []
    deadline = time.monotonic() + timeout
    exited = False
    while not (exited and child.eof) and time.monotonic() < deadline:
        readable, ended = wait_any([child], timeout=1.0)
        for ready in readable:
            received.extend(ready.messages())
        exited = exited or bool(ended)
    assert child.eof and exited, "the child did not finish"
    child.join(5)
    return received


def first_message(child: Child, timeout: float = 30.0) -> object:
    readable, _ = wait_any([child], timeout=timeout)
    assert readable == [child], "no message arrived"
    return next(child.messages())


# --- tests -----------------------------------------------------------------------------------------------------------
def test_a_child_sends_messages_and_the_parent_sees_eof_and_its_exit():
    child = Child.spawn(send_then_exit, ("a", CHILD_END, 3, 0), name="sup-send")
    try:
        assert child.pid and child.pid != os.getpid()
        assert collect(child) == [("a", 0), ("a", 1), ("a", 2)]
        assert child.exitcode == 0
        assert child.describe_exit() == "the worker exited without reporting a result"
    finally:
        child.kill()
        child.close()


def test_a_non_zero_exit_is_described_with_its_code():
    child = Child.spawn(send_then_exit, ("b", CHILD_END, 1, 3), name="sup-fail")
    try:
        assert collect(child) == [("b", 0)]
        assert child.exitcode == 3
        assert child.describe_exit("rank 1") == "rank 1 exited with code 3"
    finally:
        child.close()


@pytest.mark.parametrize(
    ("signum", "expected"),
    [
        (signal.SIGKILL, "the worker was killed by SIGKILL (out of memory?)"),
        (signal.SIGUSR1, "the worker was killed by SIGUSR1"),
    ],
)
def test_a_child_killed_by_a_signal_is_described_by_the_signal_name(signum, expected):
    child = Child.spawn(kill_self, (CHILD_END, signum), name="sup-signal")
    try:
        assert collect(child) == ["dying"]
        assert child.exitcode == -signum
        assert child.describe_exit() == expected
    finally:
        child.close()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace():
    child = Child.spawn(ignore_sigterm, (CHILD_END,), name="sup-stubborn")
    try:
        assert first_message(child) == "ready"  # its handler is installed
        start = time.monotonic()
        child.stop(grace=0.2, kill_after=0.5)
        assert not child.is_alive()
        assert child.exitcode == -signal.SIGKILL  # SIGTERM was ignored, so it had to be killed
        assert time.monotonic() - start < 10
    finally:
        child.kill()
        child.close()


def test_a_planned_stop_terminates_then_kills_from_the_owners_loop():
    children = [Child.spawn(ignore_sigterm, (CHILD_END,), name=f"sup-loop-{i}") for i in range(2)]
    try:
        assert [first_message(child) for child in children] == ["ready", "ready"]
        for child in children:
            child.stop_after(grace=0.1, kill_after=0.3)
        deadline = time.monotonic() + 20
        while any(child.is_alive() for child in children) and time.monotonic() < deadline:
            wait_any(children, timeout=0.05)
            for child in children:
                child.enforce_stop()
        assert [child.exitcode for child in children] == [-signal.SIGKILL, -signal.SIGKILL]
    finally:
        stop_all(children, grace=0, kill_after=1)
        for child in children:
            child.close()


def test_a_closed_pipe_wakes_the_owner_once_and_the_exit_still_does():
    event = new_event()
    child = Child.spawn(close_early_then_wait, (CHILD_END, event), name="sup-eof")
    try:
        assert first_message(child) == "bye"
        readable, exited = wait_any([child], timeout=10)
        assert readable == [child] and exited == []
        assert list(child.messages()) == [] and child.eof  # EOF: the child closed its end
        assert wait_any([child], timeout=0.2) == ([], [])  # still running: a closed pipe does not wake us again
        event.set()
        _, exited = wait_any([child], timeout=30)
        assert exited == [child]
        child.join(5)
        assert child.exitcode == 0
    finally:
        child.kill()
        child.close()


def test_a_duplex_child_answers_down_the_same_pipe():
    child = Child.spawn(echo, (CHILD_END,), name="sup-echo", duplex=True)
    try:
        assert child.process.daemon is False  # DESIGN: never daemon=True (the inference worker, too)
        child.conn.send(21)
        assert first_message(child) == 42
        child.conn.send(None)
        assert collect(child) == []
        assert child.exitcode == 0
    finally:
        child.kill()
        child.close()


def test_a_target_that_cannot_be_sent_to_the_child_raises_at_spawn():
    with pytest.raises(Exception):  # noqa: B017 - pickling errors differ by Python version
        Child.spawn(send_then_exit, (lambda: None, CHILD_END, 0, 0), name="sup-unpicklable")


def test_describe_exit_covers_a_vanished_child_and_unknown_signals():
    assert describe_exit(None) == "the worker vanished"
    assert describe_exit(-99, "inference worker") == "inference worker was killed by signal 99"
    assert describe_exit(-signal.SIGTERM) == "the worker was killed by SIGTERM"


def test_no_other_module_starts_its_own_processes():
    starts = re.compile(r"\b(get_context|Pipe|(?<!psutil\.)Process)\(")
    package = Path(mistudio_tui.__file__).parent
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "supervisor.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if starts.search(line)
    ]
    assert found == [], "spawn through mistudio_tui.supervisor.Child instead"
    assert "daemon" not in inspect.signature(Child.spawn).parameters
