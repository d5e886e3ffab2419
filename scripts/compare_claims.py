"""Which verdicts two claims checks disagree on: each claim's verdict and every verdict inside its rows (a network,
a network's comparison), read from two `claims.json` files, e.g. the committed study before and after a re-run.

    python scripts/compare_claims.py OLD NEW [--markdown]

OLD and NEW are paths, or `REV:PATH` for a file as git commit REV holds it (`HEAD~3:results/small/report/claims.json`).
Prints one line per verdict that differs (claim, where in it, old -> new), then the count of each change; a verdict
present in one file only reads `-` on the other side. Exits 0 (differences are not an error), 2 on an unreadable file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ABSENT = "-"


def read(source: str) -> list[dict[str, Any]]:
    """The claims of a path or of `REV:PATH` in git."""
    if not Path(source).exists() and ":" in source:
        shown = subprocess.run(["git", "show", source], capture_output=True, text=True)
        if shown.returncode != 0:
            raise ValueError(f"{source}: git show failed: {shown.stderr.strip()}")
        text = shown.stdout
    else:
        try:
            text = Path(source).read_text()
        except OSError as e:
            raise ValueError(f"{source}: {e.strerror}") from None
    try:
        claims = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not JSON ({e})") from None
    if not isinstance(claims, list) or not all(isinstance(c, dict) and "id" in c for c in claims):
        raise ValueError(f"{source}: not a claims.json (a list of claims with ids)")
    return claims


def verdicts(claims: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """{(claim, where): verdict}: the claim's own (where "") and each nested row's ("resnet34 / nag:train_loss")."""
    found: dict[tuple[str, str], str] = {}

    def walk(node: Any, claim: str, path: list[str]) -> None:
        if not isinstance(node, dict):
            return
        if "verdict" in node and path:
            found[(claim, " / ".join(path))] = str(node["verdict"])
        for key, value in node.items():
            if key != "verdict":
                walk(value, claim, [*path, str(key)])

    for claim in claims:
        name = f"{claim['id']}"
        found[(name, "")] = str(claim.get("verdict"))
        walk(claim.get("rows") or {}, name, [])
    return found


def differences(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(claim, where, old verdict, new verdict) for every verdict that differs, in claim order."""
    before, after = verdicts(old), verdicts(new)
    keys = list(before) + [k for k in after if k not in before]
    keys.sort(key=lambda k: (int(k[0]) if k[0].isdigit() else k[0], k[1]))
    return [(c, w, before.get((c, w), ABSENT), after.get((c, w), ABSENT))
            for c, w in keys if before.get((c, w), ABSENT) != after.get((c, w), ABSENT)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    try:
        old, new = read(args.old), read(args.new)
    except ValueError as e:
        print(f"compare_claims: error: {e}", file=sys.stderr)
        return 2
    changed = differences(old, new)
    if args.markdown:
        print("| claim | where | before | after |\n|---|---|---|---|")
    for claim, where, before, after in changed:
        if args.markdown:
            print(f"| {claim} | {where or '(the claim)'} | {before} | {after} |")
        else:
            print(f"claim {claim}{' ' + where if where else ''}: {before} -> {after}")
    counts = Counter((before, after) for _, _, before, after in changed)
    total = len(verdicts(new))
    summary = ", ".join(f"{n} {b} -> {a}" for (b, a), n in counts.most_common()) or "none"
    print(f"{len(changed)} of {total} verdicts changed: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
