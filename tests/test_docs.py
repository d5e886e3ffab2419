"""The README and docs/ have no dead link: every relative link names a file of the repository, and every
#anchor a heading of the page it points to (GitHub's slugs). docs/verdicts.md lists the claims' rules as the
report prints them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lstrip("#").strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    dead = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            dead.append(target)
    assert not dead, f"{page.relative_to(ROOT)}: dead links {dead}"


def test_the_readme_is_short_and_reaches_every_docs_page():
    readme = ROOT / "README.md"
    assert len(readme.read_bytes()) <= 12_000
    reached = {(readme.parent / t.partition("#")[0]).resolve() for t in links(readme)}
    assert {p.resolve() for p in PAGES[1:]} <= reached, "a docs/ page the README does not link to"
    assert "## Contents" in readme.read_text()


def test_the_slug_is_githubs():
    assert (
        slug("### At full scale: GPU-hours, and sending it to Slurm")
        == "at-full-scale-gpu-hours-and-sending-it-to-slurm"
    )
    assert slug("## The `logger` group") == "the-logger-group"


def _rules_writer():
    spec = importlib.util.spec_from_file_location("write_verdict_rules", ROOT / "scripts" / "write_verdict_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_claims_rules_in_docs_are_those_the_report_prints():
    writer = _rules_writer()
    text = writer.DOC.read_text()
    assert writer.rewritten(text) == text, "docs/verdicts.md is out of date: run python scripts/write_verdict_rules.py"
    from llbbench.report.claims import RULES

    assert all(rule in " ".join(text.split()) for _, _, rule in RULES.values())  # each rule, word for word
    drifted = text.replace("must lie below zero", "must lie below one", 1)
    assert drifted != text and writer.rewritten(drifted) != drifted  # an edit by hand is found
