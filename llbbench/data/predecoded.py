"""An image folder decoded once (`llbbench prepare-data`): each split as one uint8 array, read without JPEG decoding.

`prepare` writes, for the train and test splits of an image-folder dataset, exactly the pixels the folder
pipeline produces (RGB, shorter side resized, centre crop, uint8 C×H×W) as `<split>.npy` of shape (N, 3, crop,
crop), its labels as `<split>.labels.npy`, and `manifest.json` (the dataset's fingerprint — class list, every
file's path and size —, a stamp of every file's size and modification time, resize, crop, the classes, and each
array's SHA-256), under `<root>/.predecoded/` unless
`dataset.predecoded_dir` says otherwise. `dataset.format=predecoded` reads them memory-mapped, with a background
thread gathering each next mini-batch (into pinned memory on CUDA), normalized on the run's device: a run ends
with the same weights as on the folder.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .classes import selection
from .folder import _Images, files_stamp, scan_split
from .tensors import batch_count, normalize

MANIFEST = "manifest.json"


def folder_of(options: dict[str, Any]) -> Path:
    """Where the predecoded arrays of dataset `options` live: `predecoded_dir`, else ROOT/.predecoded (of the
    classes `dataset.classes` keeps: ROOT/.predecoded-classes100, or -classes-<hash of the names>, so that the
    arrays of a subset and of the whole folder live side by side)."""
    if options.get("predecoded_dir"):
        return Path(options["predecoded_dir"])
    chosen, tag = options.get("classes"), ""
    if isinstance(chosen, int):
        tag = f"-classes{chosen}"
    elif chosen is not None:
        tag = "-classes-" + hashlib.sha256(",".join(selection(chosen)).encode()).hexdigest()[:8]
    return Path(options["root"]) / f".predecoded{tag}"


def command(options: dict[str, Any]) -> str:
    """The command that (re)writes the arrays of dataset `options`, with every option that shapes them."""
    words = [f"dataset={options['name']}", f"dataset.root={options['root']}"]
    words += [f"dataset.{key}={options[key]}" for key in ("resize", "crop")]
    for key, default in (("train_split", "train"), ("test_split", "val"), ("predecoded_dir", None)):
        if options.get(key) not in (None, default):
            words.append(f"dataset.{key}={options[key]}")
    if options.get("classes") is not None:
        chosen = options["classes"]
        words.append(f"dataset.classes={chosen if isinstance(chosen, int) else '[' + ','.join(chosen) + ']'}")
    return "llbbench prepare-data " + " ".join(shlex.quote(word) for word in words)


def _splits(options: dict[str, Any]) -> tuple[str, str]:
    return options["train_split"], options["test_split"]


def _stamp(options: dict[str, Any]) -> str:
    return files_stamp(Path(options["root"]), _splits(options), selection(options.get("classes")))


def prepare(options: dict[str, Any], fingerprint: str) -> Path:
    """Decode the train and test splits of image folder `options` into arrays; returns the manifest's path."""
    root, out = Path(options["root"]), folder_of(options)
    out.mkdir(parents=True, exist_ok=True)
    classes = None
    splits = {}
    for split in _splits(options):
        classes, paths, labels, _ = scan_split(root, split, classes, selection(options.get("classes")))
        images = _Images(paths, torch.tensor(labels), options["resize"], options["crop"])
        array = np.lib.format.open_memmap(
            out / f"{split}.npy", mode="w+", dtype=np.uint8, shape=(len(paths), 3, options["crop"], options["crop"])
        )
        loader = DataLoader(images, batch_size=64, num_workers=options.get("num_workers", 0))
        done = 0
        for batch, _ in tqdm(loader, desc=f"decode {split}", unit="batch", disable=None):
            array[done : done + len(batch)] = batch.numpy()
            done += len(batch)
        array.flush()
        np.save(out / f"{split}.labels.npy", np.asarray(labels, dtype=np.int64))
        splits[split] = {"count": len(paths), "sha256": _digest(out / f"{split}.npy")}
    manifest = {"fingerprint": fingerprint, "files": _stamp(options), "resize": options["resize"],
                "crop": options["crop"], "classes": classes, "splits": splits}  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out / MANIFEST


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def load(options: dict[str, Any], fingerprint: str, device: torch.device, mean, std) -> tuple[Any, Any, int]:
    """(train, test, number of classes) from the arrays; a missing or stale array names the command to run."""
    out = folder_of(options)
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"no predecoded arrays in {out} (dataset.format=predecoded); run: {command(options)}")
    try:
        manifest = json.loads(manifest_path.read_text())
        counts = {split: int(manifest["splits"][split]["count"]) for split in _splits(options)}
        classes = len(manifest["classes"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{manifest_path} is damaged ({type(e).__name__}: {e}); run again: {command(options)}"
        ) from None
    wanted = {"fingerprint": fingerprint, "files": _stamp(options), "resize": options["resize"],
              "crop": options["crop"]}  # fmt: skip
    stale = [key for key, value in wanted.items() if manifest.get(key) != value]
    if stale:
        raise ValueError(
            f"the predecoded arrays in {out} are stale ({', '.join(stale)} changed since they were written); "
            f"run again: {command(options)}"
        )
    splits = []
    for split in _splits(options):
        array = _read(out / f"{split}.npy", options, mmap_mode="r")
        labels = _read(out / f"{split}.labels.npy", options, mmap_mode=None)
        if len(array) != counts[split] or len(labels) != len(array):
            raise ValueError(f"{out / split}.npy holds {len(array)} images and {len(labels)} labels, not "
                             f"{counts[split]}; run again: {command(options)}")  # fmt: skip
        splits.append(PredecodedSplit(array, torch.from_numpy(labels), np.arange(len(array)), mean, std, device))
    return splits[0], splits[1], classes


def _read(path: Path, options: dict[str, Any], mmap_mode: str | None) -> np.ndarray:
    """An array file of the predecoded folder (never unpickled); a missing or damaged one names the command."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        problem = "is missing" if isinstance(e, FileNotFoundError) else f"is damaged ({type(e).__name__}: {e})"
        raise ValueError(f"{path} {problem}; run again: {command(options)}") from None


@dataclass(frozen=True)
class PredecodedSplit:
    """Rows `rows` of a memory-mapped uint8 array; batches gathered by a background thread, normalized on
    `device`."""

    array: np.ndarray  # (N, 3, crop, crop) uint8, memory-mapped
    all_labels: torch.Tensor  # int64 of every row of the array, on the CPU
    rows: np.ndarray  # the rows of this split, in order
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device

    @property
    def labels(self) -> torch.Tensor:
        return self.all_labels[torch.from_numpy(self.rows)]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def take(self, index: torch.Tensor) -> PredecodedSplit:
        """The samples at `index` (a CPU index tensor), in that order."""
        return replace(self, rows=self.rows[index.numpy()])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return batch_count(len(self), batch_size, drop_last)

    def _gather(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(self.array[np.sort(rows)][np.argsort(np.argsort(rows))]))
        labels = self.all_labels[torch.from_numpy(rows)]
        if self.device.type == "cuda":
            images, labels = images.pin_memory(), labels.pin_memory()
        return images, labels

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None, drop_last: bool = False, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized float32 mini-batches in `order` (default: as stored; it may hold a part of the split), from
        batch number `skip` on."""
        rows = self.rows[order.cpu().numpy()] if order is not None else self.rows
        count = batch_count(len(rows), batch_size, drop_last)
        windows = [rows[i * batch_size : (i + 1) * batch_size] for i in range(skip, count)]
        ready: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def fill() -> None:  # the next batches are read from the array while the current one trains
            try:
                for window in windows:
                    if stop.is_set():
                        return
                    ready.put(self._gather(window))
                ready.put(None)
            except Exception as e:  # handed to the consumer, which raises it
                ready.put(e)

        threading.Thread(target=fill, daemon=True).start()
        on_cuda = self.device.type == "cuda"
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                images, labels = item
                images = images.to(self.device, non_blocking=on_cuda)
                yield normalize(images, self.mean, self.std), labels.to(self.device, non_blocking=on_cuda)
        finally:  # a consumer that stops early (a diverged run) lets the thread end
            stop.set()
            while not ready.empty():
                ready.get_nowait()
