"""What every benchmark record says about where and when it ran; shared by the scripts in this folder (each is run
as `python benchmarks/<name>.py`, so this folder is on sys.path)."""
import datetime
import os
import platform
import shlex
import sys

import torch

from pstn.runner import hardware


def now_utc() -> str:
    "The current UTC time, ISO 8601, to the second."
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_info() -> dict:
    """torch and Python versions, torch threads, CPU model and core count, `pstn.runner.hardware()`, the UTC date
    and the command line of this run: the fields the performance page prints under each benchmark."""
    hw = hardware()
    return {"torch": torch.__version__, "python": platform.python_version(), "num_threads": torch.get_num_threads(),
            "cpu_model": hw["cpu"], "cpu_count": os.cpu_count(), "hardware": hw, "date_utc": now_utc(),
            "command": shlex.join([os.path.relpath(sys.executable), *sys.argv])}
