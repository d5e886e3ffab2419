"""The package's import graph (every import, also those inside functions): no circle, no import from a layer
below to one above (`LAYERS`), the libraries at the bottom (optim, models, data, backend) import nothing else of
llbbench, and the tune command does not import the report it feeds."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llbbench"
# bottom to top: a module may import its own layer and those below it, never one above
LAYERS = (
    ("llbbench.optim", "llbbench.models", "llbbench.data", "llbbench.backend"),  # libraries
    ("llbbench.paper",),  # what the paper defines
    ("llbbench.records",),  # what runs leave on disk
    ("llbbench.config",),
    ("llbbench.run",),  # one run
    ("llbbench.commands", "llbbench.report"),
    ("llbbench.cli", "llbbench.__main__", "llbbench"),
)


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return rank
    raise AssertionError(f"{module} is in no layer of LAYERS: add it")


def modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def imports() -> dict[str, set[str]]:
    """Module → the llbbench modules it imports."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, file in mods.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                stem = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                targets = [f"{stem}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, path = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_import_graph_has_no_circle():
    assert cycles(imports()) == []


def test_the_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer(target) > layer(name)
    ]


def test_no_import_runs_up_the_layers():
    assert upward(imports()) == []


def test_the_check_finds_an_upward_import():
    graph = {"llbbench.records.run": {"llbbench.run.loop"}, "llbbench.cli": {"llbbench.run"}}
    assert upward(graph) == ["llbbench.records.run (layer 2) imports llbbench.run.loop (layer 4)"]


def test_the_libraries_import_nothing_else_of_llbbench():
    graph = imports()
    for library in LAYERS[0]:
        for name, targets in graph.items():
            if name == library or name.startswith(library + "."):
                outside = {t for t in targets if not (t == library or t.startswith(library + "."))}
                assert not outside, f"{name} imports {sorted(outside)}"


def test_the_report_imports_nothing_that_trains():
    """It reads the files the runs and the commands wrote: the paper's definitions and the records only."""
    allowed = ("llbbench.report", "llbbench.paper", "llbbench.records")
    for name, targets in imports().items():
        if name.startswith("llbbench.report"):
            assert {t for t in targets if not t.startswith(allowed)} == set(), name


def test_the_tune_command_does_not_import_the_report():
    graph = imports()
    assert not {t for t in graph["llbbench.commands.tune"] if t.startswith("llbbench.report")}


MAX_LINES = 50  # a function's lines, its docstring left out


def long_functions(source: str) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0]
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            lines = node.end_lineno - node.lineno + 1 - ((first.end_lineno - first.lineno + 1) if docstring else 0)
            if lines > MAX_LINES:
                found.append((node.name, lines))
    return found


def test_no_function_of_the_package_is_longer_than_50_lines():
    found = {f"{file.relative_to(PACKAGE.parent)}:{name}": n for file in PACKAGE.rglob("*.py")
             for name, n in long_functions(file.read_text())}  # fmt: skip
    assert found == {}


def test_the_length_check_counts_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions(f'def f():\n    """doc"""\n{body}\n') == [("f", MAX_LINES + 1)]
    assert long_functions(f"def f():\n{body}\n") == [("f", MAX_LINES + 1)]


def test_nothing_imports_hydras_internals():
    """Hydra's public API only (`hydra._internal` moves between releases); the launchers are known in one module,
    llbbench/config/launchers.py."""
    found = [name for name, file in modules().items() if "hydra._internal" in file.read_text()]
    assert found == []


MAX_MODULE_LINES = 450
STILL_LARGE = {"llbbench.report.claims": 718, "llbbench.report.tables": 488}  # to be split (#40): they may not grow


def test_no_module_is_longer_than_450_lines():
    found = {name: len(file.read_text().splitlines()) for name, file in modules().items()}
    over = {name: n for name, n in found.items() if n > STILL_LARGE.get(name, MAX_MODULE_LINES)}
    assert over == {}
    assert all(found[name] > MAX_MODULE_LINES for name in STILL_LARGE), "split: take it off STILL_LARGE"
