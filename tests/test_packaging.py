"""llbbench installs like a library: every import declared, every package shipped, and a built wheel that runs
from outside the checkout with the config it carries."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from llbbench.records.environment import dependency_versions
from tests.conftest import write_cifar

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def _imported_top_level_modules(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_package_the_code_imports_is_declared():
    """...in pyproject's dependencies, or in an extra for what only an option needs (the loggers)."""
    import tomllib

    extras = tomllib.loads(PYPROJECT)["project"]["optional-dependencies"]
    optional = {re.split(r"[<>=\[ ]", r)[0].lower() for name, reqs in extras.items() if name != "dev" for r in reqs}
    declared = {name.lower() for name in dependency_versions()} | optional  # the names of pyproject's dependencies
    distributions = importlib.metadata.packages_distributions()
    third_party = {
        module
        for module in _imported_top_level_modules(ROOT / "llbbench")
        if module not in sys.stdlib_module_names and module != "llbbench"
    }
    needed = {module: {d.lower() for d in distributions.get(module, [module])} for module in third_party}
    undeclared = sorted(module for module, names in needed.items() if not names & declared)
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"


def test_every_package_of_llbbench_is_listed_for_the_wheel():
    found = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "llbbench").rglob("__init__.py")}
    listed = re.search(r"^packages = \[(.*?)\]$", PYPROJECT, re.MULTILINE | re.DOTALL).group(1)
    assert {name.strip().strip('"') for name in listed.split(",") if name.strip()} == found | {"llbbench.conf"}


def test_the_wheel_carries_its_config_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel, install it (no dependencies: the test environment's are reused) into a fresh environment,
    and train one tiny run from a folder that is not the checkout."""
    source = tmp_path / "source"  # a copy, so that no build/ folder of an earlier build can slip into the wheel
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("llbbench", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the built source"]):
        subprocess.run([*git, *step], check=True, capture_output=True)
    built_from = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("llbbench-*.whl")
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    reused = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "reused-dependencies.pth").write_text("\n".join(reused) + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    data = write_cifar(elsewhere / "data")
    where = subprocess.run(
        [str(python), "-c", "import llbbench.config as c; print(c.config_dir())"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(site) and (Path(where) / "config.yaml").exists()  # the wheel's copy, not conf/
    out = subprocess.run(
        [
            str(env / "bin" / "llbbench"),
            "run",
            f"dataset.root={data}",
            "device=cpu",
            "model.width=0.25",
            "train.epochs=1",
            "dataset.subset=100",
            "cv.folds=2",
            "results_dir=results",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (summary,) = (elsewhere / "results" / "runs").glob("*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"
    recorded = json.loads((summary.parent / "env.json").read_text())
    assert recorded["git_commit"] == built_from  # the commit the wheel was built from
    assert recorded["llbbench"] == importlib.metadata.version("llbbench")
