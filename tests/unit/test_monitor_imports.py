"""Import hygiene: the monitor back end runs in the UI and side-pane processes, so it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ("nvml", "host", "correlate", "history")
FORBIDDEN = ("torch", "textual", "transformers", "datasets")


def test_monitor_modules_import_no_heavy_packages() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import mistudio_tui.monitor.{name}\n" for name in MODULES)
        + f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_sampling_gpus_imports_no_heavy_packages() -> None:
    code = (
        "import json, sys\n"
        "from mistudio_tui.monitor.nvml import GpuMonitor\n"
        "m = GpuMonitor(); m.sample(); m.close()\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
