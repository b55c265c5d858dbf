"""Start-up and job-protocol benchmark.

1. Time from process start to the TUI's first frame (goal < 1 s), and proof that torch was not imported.
   Reference in the same run: the first frame of a minimal Textual app (header, table, footer).
2. Pipe throughput of the job protocol through the real runner (goal >= 10,000 messages/s, none lost).
   Reference in the same run: the same messages over a bare multiprocessing pipe.

Usage: python benchmarks/startup.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_line import bench_line


def first_frame(home: Path) -> dict:
    probe = home / "probe.json"
    env = dict(os.environ, MISTUDIO_HOME=str(home), MISTUDIO_STARTUP_PROBE=str(probe), TERM="xterm-256color")
    code = (
        "import asyncio\n"
        "from mistudio_tui.app import MiStudioApp\n"
        "async def main():\n"
        "    app = MiStudioApp(offer_sample=False)\n"
        "    async with app.run_test(size=(120, 40)) as pilot:\n"
        "        while app.is_running:\n"
        "            await pilot.pause(0.01)\n"
        "asyncio.run(main())\n"
    )
    launched = time.time()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True)
    result = json.loads(probe.read_text())
    result["first_frame_s"] = result["first_frame_at"] - launched
    return result


MINIMAL_APP = """
import asyncio, json, sys, time
from textual.app import App
from textual.widgets import DataTable, Footer, Header

class Minimal(App):
    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self):
        self.call_after_refresh(self.done)

    def done(self):
        print(json.dumps(time.time()))
        self.exit()

async def main():
    app = Minimal()
    async with app.run_test(size=(120, 40)) as pilot:
        while app.is_running:
            await pilot.pause(0.01)

asyncio.run(main())
"""


def minimal_textual() -> float:
    """First frame of a minimal Textual app (header, table, footer) started the same way."""
    launched = time.time()
    out = subprocess.run([sys.executable, "-c", MINIMAL_APP], check=True, timeout=60, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1]) - launched


def _raw_sender(conn, n: int) -> None:
    from mistudio_tui.jobs import protocol as p

    for i in range(n):
        conn.send(p.LogLine(str(i)))
    conn.close()


def raw_pipe(n: int) -> float:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_raw_sender, args=(send, n))
    proc.start()
    send.close()
    got = 0
    start = None
    while True:
        try:
            recv.recv()
        except EOFError:
            break
        if start is None:
            start = time.perf_counter()
        got += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    proc.join()
    assert got == n, f"raw pipe lost messages: {got}/{n}"
    return n / elapsed


def runner_pipe(home: Path, n: int) -> tuple[float, int]:
    from mistudio_tui.jobs.kinds.diagnostics import FloodParams
    from mistudio_tui.studio import Studio

    studio = Studio(home)
    seen: list[float] = []

    def listener(event) -> None:
        if event.type == "log":
            seen.append(time.perf_counter())

    studio.runner.add_listener(listener)
    job = studio.runner.submit("diag.flood", FloodParams(messages=n))
    done = studio.runner.wait(job.id, timeout=300)
    studio.close()
    assert done.status == "completed", done.error
    rate = (len(seen) - 1) / (seen[-1] - seen[0]) if len(seen) > 1 else 0.0
    return rate, len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    n = 50_000 if args.quick else 200_000
    frames, heavy = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            result = first_frame(Path(tmp) / f"home{i}")
            frames.append(result["first_frame_s"])
            heavy.update(result["heavy_modules"])
        reference = statistics.median(minimal_textual() for _ in range(runs))
        raw = raw_pipe(n)
        rate, received = runner_pipe(Path(tmp) / "pipe", n)
    frame = statistics.median(frames)
    print(f"first frame: median {frame:.3f} s over {runs} runs (a minimal Textual app: {reference:.3f} s)")
    print(f"modules imported by the UI process: {sorted(heavy) or 'no torch/transformers/datasets'}")
    print(
        f"job protocol: {rate:,.0f} messages/s through the runner, {received:,}/{n:,} received; bare pipe {raw:,.0f}/s"
    )
    for line in (
        bench_line("startup_first_frame", frame, "s", "<=", 1.0),
        bench_line("startup_vs_minimal_textual_app", frame / reference, "x", "<=", 2.0),
        bench_line("ui_imports_torch", int(bool(heavy)), "bool", "==", 0),
        bench_line("job_protocol_rate", rate, "msg/s", ">=", 10_000, digits=6),
        bench_line("job_protocol_loss", n - received, "messages", "==", 0),
        bench_line("job_protocol_vs_bare_pipe", rate / raw, "x", ">=", 0.5),
    ):
        print(line)


if __name__ == "__main__":
    main()
