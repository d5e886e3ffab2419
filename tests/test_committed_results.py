"""The committed results (results/): nothing in them names a path of the machine that made them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?<![\w.:])/(?:work|home|Users|tmp|root|mnt|scratch|private|var)/[\w.-]+")


def committed(folder: str) -> list[Path]:
    """The files under `folder` that git tracks (what a clone has), else every file there."""
    try:
        out = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=True)
        return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in (ROOT / folder).rglob("*") if p.is_file()]


def test_no_committed_result_holds_an_absolute_path():
    offending = []
    for path in committed("results"):
        if path.suffix in (".png", ".pdf"):
            continue
        found = ABSOLUTE.search(path.read_text(errors="replace"))
        if found:
            offending.append(f"{path.relative_to(ROOT)}: {found.group(0)}")
        if path.name == "config.yaml":
            root = (yaml.safe_load(path.read_text()).get("dataset") or {}).get("root", "")
            if str(root).startswith("/"):
                offending.append(f"{path.relative_to(ROOT)}: dataset.root {root}")
    assert not offending, "\n".join(offending[:10])


def test_the_pattern_finds_what_it_should():
    assert ABSOLUTE.search("root: /work/main/data") and ABSOLUTE.search('"/home/me/x"')
    assert not ABSOLUTE.search("root: data") and not ABSOLUTE.search("see https://example.org/work/x")
