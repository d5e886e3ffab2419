"""Which class folders of an image folder a run reads: `dataset.classes` (null: all of them).

`dataset.classes=100` is ImageNet-100, the fixed 100-class subset of ILSVRC-2012 that Tian, Krishnan and Isola
published with "Contrastive Multiview Coding" (2019; github.com/HobbitLong/CMC, imagenet100.txt) and that much
later work reuses; a list of folder names picks those classes. Labels are the chosen folders in sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# ImageNet-100 (CMC's imagenet100.txt), in that file's order: WordNet ids, the class folders of ILSVRC-2012
IMAGENET100 = (
    "n02869837", "n01749939", "n02488291", "n02107142", "n13037406", "n02091831", "n04517823", "n04589890",
    "n03062245", "n01773797", "n01735189", "n07831146", "n07753275", "n03085013", "n04485082", "n02105505",
    "n01983481", "n02788148", "n03530642", "n04435653", "n02086910", "n02859443", "n13040303", "n03594734",
    "n02085620", "n02099849", "n01558993", "n04493381", "n02109047", "n04111531", "n02877765", "n04429376",
    "n02009229", "n01978455", "n02106550", "n01820546", "n01692333", "n07714571", "n02974003", "n02114855",
    "n03785016", "n03764736", "n03775546", "n02087046", "n07836838", "n04099969", "n04592741", "n03891251",
    "n02701002", "n03379051", "n02259212", "n07715103", "n03947888", "n04026417", "n02326432", "n03637318",
    "n01980166", "n02113799", "n02086240", "n03903868", "n02483362", "n04127249", "n02089973", "n03017168",
    "n02093428", "n02804414", "n02396427", "n04418357", "n02172182", "n01729322", "n02113978", "n03787032",
    "n02089867", "n02119022", "n03777754", "n04238763", "n02231487", "n03032252", "n02138441", "n02104029",
    "n03837869", "n03494278", "n04136333", "n03794056", "n03492542", "n02018207", "n04067472", "n03930630",
    "n03584829", "n02123045", "n04229816", "n02100583", "n03642806", "n04336792", "n03259280", "n02116738",
    "n02108089", "n03424325", "n01855672", "n02090622",
)  # fmt: skip
NAMED = {100: IMAGENET100}  # dataset.classes=N with a fixed list


def selection(choice: Any) -> tuple[str, ...] | None:
    """The class folders `dataset.classes` names, sorted (the labels' order); None: every class folder.

    Raises `ValueError` for anything else than null, a number with a fixed list (100) or a list of names."""
    if choice is None:
        return None
    if isinstance(choice, int) and not isinstance(choice, bool):
        if choice not in NAMED:
            raise ValueError(
                f"dataset.classes={choice} has no fixed class list: use 100 (ImageNet-100, the CMC list; "
                "docs/scales.md), a list of class folder names such as [n01440764,n02102040], or null (all)"
            )
        return tuple(sorted(NAMED[choice]))
    names = list(choice) if isinstance(choice, Sequence) and not isinstance(choice, str) else None
    if not names or not all(isinstance(n, str) and n and "/" not in n for n in names):
        raise ValueError(
            f"dataset.classes={choice!r} is not a class selection: use 100 (ImageNet-100), a non-empty list of "
            "class folder names, or null (all)"
        )
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"dataset.classes names {', '.join(twice)} more than once")
    return tuple(sorted(names))
