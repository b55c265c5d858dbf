"""One way to run a child process: spawn it with a pipe, wait on the pipe and its sentinel, stop it, describe its exit.

Used by the job runner (one child per job), the distributed-training launcher (one child per rank) and the
inference session (one long-lived worker). Stdlib only, so the torch-free UI and the compute code both use it.

- Always the "spawn" start method (no forked copy of a parent's threads, CUDA state or open database).
- The parent keeps only its end of the pipe, so EOF on it means the child is gone (or closed its end).
- The owner waits on messages and exits together (`wait_any`), never polling `is_alive` in a loop.
- Stopping is terminate after a grace, then kill (`stop_all` blocking, or `stop_after` + `enforce_stop` from a loop).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from mistudio_tui.process_io import real_stdio

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

SPAWN = multiprocessing.get_context("spawn")
KILL_AFTER_S = 5.0  # how long a terminated child gets to exit before it is killed


class _ChildEnd:
    """Marks where the child's end of the pipe goes in the target's arguments."""

    def __repr__(self) -> str:
        return "CHILD_END"


CHILD_END: Any = _ChildEnd()


def new_event() -> Event:
    """A cancel event the child can poll (created from the spawn context, as the child's pipe is)."""
    with real_stdio():  # the Event's semaphore may start multiprocessing's resource tracker
        return SPAWN.Event()


@dataclass(eq=False)
class Child:
    """A spawned process and the parent's end of its pipe."""

    process: BaseProcess
    conn: Connection
    eof: bool = False  # the pipe is closed: nothing more will arrive
    terminate_at: float | None = None  # a planned stop (`stop_after`): when to terminate, then when to kill
    kill_at: float | None = None
    kill_after: float = KILL_AFTER_S

    @classmethod
    def spawn(
        cls,
        target: Callable[..., Any],
        args: Sequence[Any],
        *,
        name: str,
        duplex: bool = False,
    ) -> Child:
        """Start `target(*args)` in a spawned process, `CHILD_END` in `args` replaced by the child's end of a pipe.

        One-way (child to parent) unless `duplex`. A child that cannot start raises, with both ends closed. Never a
        daemon process: a daemon cannot start processes of its own and is killed at exit without its cleanup; each
        child here ends when its parent's end of the pipe closes, and its owner stops it (terminate, then kill).
        """
        parent_end, child_end = SPAWN.Pipe(duplex=duplex)  # one-way: the first end receives, the second sends
        process = SPAWN.Process(
            target=target,
            args=tuple(child_end if arg is CHILD_END else arg for arg in args),
            name=name,
        )
        try:
            with real_stdio():
                process.start()
        except BaseException:
            parent_end.close()
            child_end.close()
            raise
        child_end.close()  # the parent keeps only its own end, so EOF means the child is gone
        return cls(process, parent_end)

    # --- the process -----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        pid = self.process.pid
        if pid is None:  # spawn() starts the process before it returns a Child
            raise RuntimeError(f"{self.process.name} has not started")
        return pid

    @property
    def exitcode(self) -> int | None:
        """None while it runs; 0 or the code it exited with; -N when signal N killed it."""
        return self.process.exitcode

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)

    # --- the pipe --------------------------------------------------------------------------------
    def messages(self, block: bool = False) -> Iterator[Any]:
        """The messages already waiting (or, with `block`, every message until EOF); at EOF `eof` becomes True.

        Any other error reading (a message that cannot be unpickled) also sets `eof`, then propagates.
        """
        try:
            while not self.eof and (block or self.conn.poll()):
                yield self.conn.recv()
        except (EOFError, OSError):
            self.eof = True
        except Exception:
            self.eof = True
            raise

    def close(self) -> None:
        """Close the parent's end of the pipe."""
        with contextlib.suppress(OSError):
            self.conn.close()

    # --- stopping --------------------------------------------------------------------------------
    def stop_after(self, grace: float, kill_after: float = KILL_AFTER_S) -> None:
        """Plan a stop for `enforce_stop`: terminate once `grace` seconds pass, kill `kill_after` seconds later."""
        if self.terminate_at is None and self.kill_at is None:
            self.terminate_at = time.monotonic() + grace
            self.kill_after = kill_after

    def enforce_stop(self, now: float | None = None) -> None:
        """Terminate or kill the child if its planned stop is due (call it from the owner's loop)."""
        now = time.monotonic() if now is None else now
        if self.terminate_at is not None and now >= self.terminate_at and self.is_alive():
            self.process.terminate()
            self.terminate_at = None
            self.kill_at = now + self.kill_after
        elif self.kill_at is not None and now >= self.kill_at and self.is_alive():
            self.process.kill()
            self.kill_at = None

    def stop(self, grace: float, kill_after: float = KILL_AFTER_S) -> None:
        """Wait `grace` seconds for the child to exit, then terminate it, then kill it (blocks until it is gone)."""
        stop_all([self], grace, kill_after)

    def kill(self, join_timeout: float = 5.0) -> None:
        """Kill the child at once if it still runs, and reap it."""
        if self.is_alive():
            self.process.kill()
        self.join(join_timeout)

    def describe_exit(self, who: str = "the worker") -> str:
        return describe_exit(self.exitcode, who)


def wait_any(children: Iterable[Child], timeout: float | None) -> tuple[list[Child], list[Child]]:
    """Wait until a child has a message (or EOF) waiting or a child exits; (readable, exited) children.

    A child whose pipe is at EOF is waited on by its sentinel only, so a closed pipe does not wake the owner.
    """
    handles: dict[Any, Child] = {}
    for child in children:
        if not child.eof:
            handles[child.conn] = child
        handles[child.sentinel] = child
    if not handles:
        if timeout:
            time.sleep(timeout)
        return [], []
    ready = wait(list(handles), timeout=timeout)
    readable = [handles[h] for h in ready if h is handles[h].conn]
    exited = list(dict.fromkeys(handles[h] for h in ready if h is not handles[h].conn))
    return readable, exited


def stop_all(children: Sequence[Child], grace: float, kill_after: float = KILL_AFTER_S) -> None:
    """Give the children `grace` seconds to exit, terminate those left, kill those still left `kill_after` later."""
    _join_all(children, grace)
    for child in children:
        if child.is_alive():
            child.process.terminate()
    _join_all(children, kill_after)
    for child in children:
        if child.is_alive():
            child.process.kill()
    _join_all(children, kill_after)


def _join_all(children: Sequence[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))


def describe_exit(code: int | None, who: str = "the worker") -> str:
    """One line on how a child that reported no result ended, e.g. 'the worker was killed by SIGKILL (out of
    memory?)' or 'rank 1 exited with code 1'."""
    if code is None:
        return f"{who} vanished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"{who} was killed by {name}{hint}"
    if code == 0:
        return f"{who} exited without reporting a result"
    return f"{who} exited with code {code}"
