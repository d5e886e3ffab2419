"""env.json: where and with what a run was made (machine, versions, commit)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torchvision


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment(device: torch.device) -> dict[str, Any]:
    """What a reader needs to know about where and with what a run was made."""
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = _cpu_model() or platform.processor() or platform.machine()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "llbbench": llbbench_version(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_count": gpus,
        "gpu_names": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "packages": dependency_versions(),
        "device": str(device),
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git_commit": _git_commit(),
        "start_time": now(),
    }


def dependency_versions() -> dict[str, str | None]:
    """The installed version of each package llbbench depends on (None when one is missing)."""
    try:
        requirements = importlib.metadata.requires("llbbench") or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return {}
    names = sorted({re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements if "extra ==" not in r})
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    """The commit of the code being run (with "-dirty" when it has uncommitted changes), if it is a checkout; from
    an installed wheel, the commit it was built from (its `_build.json`, written by setup.py), where known."""
    here = Path(__file__).resolve().parent
    built = here.parent / "_build.json"
    if built.exists():  # an installed wheel: not a checkout, whatever folder it was installed into
        try:
            return json.loads(built.read_text()).get("git_commit")
        except (OSError, ValueError):
            return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def llbbench_version() -> str:
    """The installed llbbench's version (pyproject.toml's), or `0+unknown` from a checkout not installed."""
    try:
        return importlib.metadata.version("llbbench")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
