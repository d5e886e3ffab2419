"""Getting fast.ai's Imagenette and Imagewoof onto disk (`dataset.download=true`), where there is internet.

Imagenette comes through torchvision's own class, `torchvision.datasets.Imagenette` (its URLs and md5 sums),
which unpacks `imagenette2-160/` (or `-320`, or `imagenette2/` full size) beside it; torchvision has no class for
Imagewoof, so its fast.ai tarball is fetched with torchvision's download helper (no published md5 to check).
Either way the result is an image folder, ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG, read as any other;
for Imagenette the folder is then read back through torchvision's class too, and both must see the same classes
and images.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the folder an archive unpacks to → (torchvision's size name, the fast.ai archive)
SIZES = {"": "full", "-320": "320px", "-160": "160px"}
FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas"
ARCHIVES = {"imagewoof": {f"imagewoof2{tag}": f"{FASTAI}/imagewoof2{tag}.tgz" for tag in SIZES}}
FOLDERS = {"imagenette": [f"imagenette2{tag}" for tag in SIZES], "imagewoof": list(ARCHIVES["imagewoof"])}


_FAILED: dict[str, FileNotFoundError] = {}  # the downloads that failed in this process, by destination


def download_once(destination: Path, fetch: Callable[[], None], message: Callable[[Exception], str]) -> None:
    """`fetch()` the data for `destination`; when it fails, `FileNotFoundError(message(error))`, and the same error
    at once for every later try of this destination in this process: a sweep checks each of its runs before any
    starts, and offline each check would otherwise wait for the network again."""
    key = str(destination)
    if key in _FAILED:
        raise FileNotFoundError(str(_FAILED[key]))
    try:
        fetch()
    except Exception as e:  # offline, refused, a corrupted archive, a full disk
        _FAILED[key] = FileNotFoundError(message(e))
        raise _FAILED[key] from e


def ensure(options: dict[str, Any]) -> None:
    """With `download` on and the image folder `root` missing, fetch and unpack it (Imagenette, Imagewoof);
    `FileNotFoundError` names what failed and how to get the data by hand. Anything else is left alone."""
    root = Path(options["root"])
    name = options["name"]
    if not options.get("download") or (root / options["train_split"]).is_dir():
        return
    if name not in FOLDERS:
        raise FileNotFoundError(
            f"dataset.download=true: llbbench downloads Imagenette and Imagewoof only (dataset=imagenette, "
            f"dataset=imagewoof), not dataset={name}; put the image folder at dataset.root={root}"
        )
    if root.name not in FOLDERS[name]:
        raise FileNotFoundError(
            f"dataset.download=true unpacks {name} into a folder named {' or '.join(FOLDERS[name])}, not "
            f"{root.name}: set dataset.root={root.parent / FOLDERS[name][-1]} (160 px) or another of those names"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.download.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs of a sweep: one downloads, the others wait for it
        if (root / options["train_split"]).is_dir():
            return
        source = "torchvision.datasets.Imagenette" if name == "imagenette" else ARCHIVES[name][root.name]
        download_once(root, lambda: _fetch(name, root), lambda e: (
            f"could not download {name} through {source} into {root.parent}/ ({type(e).__name__}: {e}); "
            f"offline, fetch {root.name}.tgz on a machine that is online and unpack it there "
            f"(it must give {root}/train/<wnid>/ and {root}/val/<wnid>/)"
        ))  # fmt: skip
    if name == "imagenette":
        check_with_torchvision(root)


def _fetch(name: str, root: Path) -> None:
    if name == "imagenette":
        from torchvision.datasets import Imagenette

        Imagenette(str(root.parent), split="train", size=size_of(root), download=True)
    else:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(ARCHIVES[name][root.name], download_root=str(root.parent))


def size_of(root: Path) -> str:
    """torchvision's `size` of the Imagenette folder `root` (`imagenette2-160` → `160px`)."""
    return SIZES[root.name.removeprefix("imagenette2")]


def check_with_torchvision(root: Path) -> None:
    """The Imagenette folder `root` as torchvision's class reads it and as llbbench does: the same class order
    and the same (image, label) pairs in both splits, else `ValueError`."""
    from torchvision.datasets import Imagenette

    from .folder import scan_split

    classes = None
    for split in ("train", "val"):
        theirs = Imagenette(str(root.parent), split=split, size=size_of(root))
        classes, paths, labels, _ = scan_split(root, split, classes)
        ours = [(str(p), label) for p, label in zip(paths, labels, strict=True)]
        if list(theirs.wnids) != classes or sorted(ours) != sorted(map(tuple, theirs._samples)):
            raise ValueError(
                f"{root}/{split}/ reads differently through torchvision.datasets.Imagenette ({len(theirs)} images, "
                f"{len(theirs.wnids)} classes) and as an image folder ({len(ours)}, {len(classes)}): files that are "
                f"not .JPEG or extra folders? Remove them, or use dataset=imagefolder dataset.root={root}"
            )
