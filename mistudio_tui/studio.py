"""Studio: the home folder, the database and the job runner, opened once by the TUI or a CLI command."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from peewee import SqliteDatabase

from mistudio_tui.config import Paths, paths
from mistudio_tui.db.connection import DiskFull, close_database, is_disk_full, open_database, schema_version
from mistudio_tui.db.jobs import recover_interrupted
from mistudio_tui.db.ownership import adopt_legacy_folders

if TYPE_CHECKING:  # imported lazily at run time: the runner starts a thread, the session a torch worker
    from mistudio_tui.inference.session import InferenceSession
    from mistudio_tui.jobs.runner import JobRunner


class Studio:
    """What every front end needs: `paths`, `db`, and a lazily started `runner`."""

    def __init__(self, home: Path | str | None = None, max_parallel: int | None = None) -> None:
        self.paths: Paths = paths(home)
        try:
            self.paths.ensure()
            self.db: SqliteDatabase = open_database(self.paths.db)  # refuses an emptied database beside data
            self.interrupted: list[int] = recover_interrupted()
            adopt_legacy_folders(self.paths.home)
        except Exception as exc:
            if is_disk_full(exc):
                close_database()
                raise DiskFull(
                    f"no space left on device for the studio in {self.paths.home}: free some space and try again"
                ) from None
            raise
        self._max_parallel = max_parallel
        self._runner: JobRunner | None = None
        self._inference: InferenceSession | None = None
        self._inference_lock = threading.Lock()

    @property
    def runner(self) -> JobRunner:
        if self._runner is None:
            from mistudio_tui.jobs.runner import JobRunner

            self._runner = JobRunner(self.paths, max_parallel=self._max_parallel)
        return self._runner

    @property
    def has_runner(self) -> bool:
        return self._runner is not None

    @property
    def inference(self) -> InferenceSession:
        """One torch worker shared by every screen, started on first request."""
        with self._inference_lock:
            if self._inference is None:
                from mistudio_tui.inference.session import InferenceSession

                self._inference = InferenceSession(self.paths.home)
            return self._inference

    def schema_version(self) -> int:
        return schema_version(self.db)

    def close(self, cancel_jobs: bool = True) -> None:
        """Stop the runner (cancelling its jobs unless told otherwise), the inference worker, and the database."""
        if self._inference is not None:
            self._inference.close()
            self._inference = None
        if self._runner is not None:
            self._runner.shutdown(cancel=cancel_jobs)
            self._runner = None
        close_database()
