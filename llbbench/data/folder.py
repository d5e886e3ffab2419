"""ImageNet and any folder of class sub-folders: `ROOT/<split>/<class>/<image>`, decoded in DataLoader workers."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from .tensors import batch_count, normalize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan_split(
    root: Path, split: str, classes: Sequence[str] | None = None, select: Sequence[str] | None = None
) -> tuple[list[str], list[Path], list[int], list[os.stat_result]]:
    """(class names, image paths, labels, each file's `stat`: one per file) of `root/split/<class>/*`; classes
    sorted by name.

    With `select` (`dataset.classes`, sorted), only those class folders are read, and the split must hold them
    all. With `classes` given (those of the training split), the split must hold exactly those class folders
    (beside the ones `select` leaves out). A file
    that is empty (zero bytes), not a regular file or cannot be stat'ed is refused, naming it and how many more
    there are.
    """
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder split {split!r} not found: expected {folder}/ with one sub-folder per class "
            f"(layout ROOT/train/<class>/*.JPEG, ROOT/val/<class>/*.JPEG; the root is dataset.root)"
        )
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not found:
        raise ValueError(f"{folder}/ holds no class sub-folders (expected {folder}/<class>/<image>)")
    if select is not None:
        missing = sorted(set(select) - set(found))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValueError(
                f"{folder}/ lacks {len(missing)} of the {len(select)} class folders dataset.classes names: {shown} "
                f"(it has {len(found)} class folders)"
            )
        found = list(select)
    if classes is not None and found != list(classes):
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise ValueError(
            f"the classes of {folder}/ differ from the training split's: missing {missing}, not in training {extra}"
        )
    paths, labels = [], []
    for label, name in enumerate(found):
        images = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(f"class folder {folder / name}/ holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        paths += images
        labels += [label] * len(images)
    stats, bad = [], []
    for path in paths:
        try:
            info = path.stat()
        except OSError as e:  # a broken link, a file that went away
            bad.append((path, f"unreadable ({e.strerror})"))
            continue
        stats.append(info)
        if not stat.S_ISREG(info.st_mode):
            bad.append((path, "not a file (a directory?)"))
        elif info.st_size == 0:
            bad.append((path, "empty (zero bytes)"))
    if bad:
        more = f" and {len(bad) - 1} more of the split's {len(paths)} images are bad too" if len(bad) > 1 else ""
        raise ValueError(f"image file {bad[0][0]} is {bad[0][1]}{more}; remove or replace them")
    return found, paths, labels, stats


def folder_fingerprint(root: Path, splits: Sequence[str], select: Sequence[str] | None = None) -> str:
    """What the image folder at `root` holds in `splits` (of the classes `select`, or all): its file count and a
    hash of the class list and every file's relative path and size (a listing and a `stat` per file; no image is
    read)."""
    digest = hashlib.sha256()
    count = 0
    classes = None
    for split in splits:
        classes, paths, _, stats = scan_split(root, split, classes, select)
        digest.update(repr((split, classes)).encode())
        for path, info in zip(paths, stats, strict=True):
            digest.update(f"{path.relative_to(root).as_posix()}\t{info.st_size}\n".encode())
        count += len(paths)
    return f"imagefolder-{count}-{digest.hexdigest()[:16]}"


def files_stamp(root: Path, splits: Sequence[str], select: Sequence[str] | None = None) -> str:
    """A hash of every image's relative path, size and modification time in `splits`: unlike the fingerprint
    (paths and sizes: a run's identity, the same for a copy of the folder), it changes when an image is rewritten
    with other pixels at the same size."""
    digest = hashlib.sha256()
    classes = None
    for split in splits:
        classes, paths, _, stats = scan_split(root, split, classes, select)
        for path, info in zip(paths, stats, strict=True):
            digest.update(f"{path.relative_to(root).as_posix()}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def unreadable_images(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """The images among `paths` that do not open as images (their headers are read, not the pixels), with why."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as e:  # PIL raises many types for bad files
            bad.append((path, f"{type(e).__name__}: {e}"))
    return bad


class _Images(Dataset):
    """Decodes one image to RGB, resizes its shorter side, centre-crops, and returns it as uint8 C×H×W."""

    def __init__(self, paths: Sequence[Path], labels: torch.Tensor, resize: int, crop: int) -> None:
        self.paths, self.labels = paths, labels
        self.transform = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop), v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # greyscale, CMYK, palette and alpha images alike
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise ValueError(f"unreadable image {path}: {e}") from e
        return self.transform(rgb), self.labels[index]


class _Order(Sampler):
    """The indices of the coming pass: set before each pass, so that one DataLoader (and its workers) serves all."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class FolderSplit:
    """Images on disk, decoded in `num_workers` DataLoader workers; batches land on `device`, normalized there.
    Each batch size keeps one DataLoader whose workers persist from epoch to epoch."""

    paths: tuple[Path, ...]
    labels: torch.Tensor  # int64, on the CPU
    mean: torch.Tensor  # C×1×1 on `device`
    std: torch.Tensor
    device: torch.device
    resize: int = 256
    crop: int = 224
    num_workers: int = 4
    _loaders: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (batch, drop_last)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (3, self.crop, self.crop)

    def _loader(self, batch_size: int, drop_last: bool) -> tuple[DataLoader, _Order]:
        key = (batch_size, drop_last)
        if key not in self._loaders:
            order = _Order()
            loader = DataLoader(
                _Images(self.paths, self.labels, self.resize, self.crop),
                batch_size=batch_size,
                sampler=order,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                drop_last=drop_last,
                persistent_workers=self.num_workers > 0,
            )
            self._loaders[key] = (loader, order)
        return self._loaders[key]

    def take(self, index: torch.Tensor) -> FolderSplit:
        """The samples at `index` (a CPU index tensor), in that order."""
        return replace(self, paths=tuple(self.paths[i] for i in index.tolist()), labels=self.labels[index])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return batch_count(len(self), batch_size, drop_last)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None, drop_last: bool = False, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized float32 mini-batches in `order` (default: as stored; it may hold a part of the split), from
        batch number `skip` on."""
        on_cuda = self.device.type == "cuda"
        indices = order.tolist() if order is not None else list(range(len(self)))
        loader, sampler = self._loader(batch_size, drop_last)
        sampler.indices = indices[skip * batch_size :]
        try:
            for images, labels in loader:
                images = images.to(self.device, non_blocking=on_cuda)
                yield normalize(images, self.mean, self.std), labels.to(self.device, non_blocking=on_cuda)
        except ValueError as e:  # an image a worker could not decode: name it and count the split's other bad ones
            bad = unreadable_images(self.paths)
            if not bad:
                raise
            first, why = bad[0]
            more = f"; {len(bad) - 1} more of the split's {len(self)} images are unreadable too" if len(bad) > 1 else ""
            raise ValueError(f"unreadable image {first} ({why}){more}; remove or replace them") from e
