"""The wheel records the commit it was built from (llbbench/_build.json), where git knows it; everything else about
the build is in pyproject.toml."""

import json
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCommit(build_py):
    def run(self) -> None:
        super().run()
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                    text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            commit = None
        target = Path(self.build_lib) / "llbbench" / "_build.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"git_commit": commit}) + "\n")


setup(cmdclass={"build_py": BuildWithCommit})
