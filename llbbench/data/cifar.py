"""CIFAR-10 from the official python-pickle files (`cifar-10-batches-py/`), as uint8 tensors."""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import os
import pickle
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# md5 of each file of the official release (as torchvision lists them)
TRAIN_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
TEST_FILES = {"test_batch": "40351d587109b95175f43aff81a1287e"}
ALL_FILES = {**TRAIN_FILES, **TEST_FILES}
NUM_CLASSES = 10


class NotOfficialWarning(UserWarning):
    """The files load, but are not the official release: results are not comparable to published ones."""


def ensure_cifar10(root: str | Path, download: bool = False) -> Path:
    """The folder of the six CIFAR-10 files under `root`, downloaded first (md5-checked) when missing and
    `download` is true; otherwise, or offline, the `FileNotFoundError` names the folder and both ways to get them.
    """
    folder = Path(root) / FOLDER
    if any(not (folder / name).is_file() for name in ALL_FILES):
        if not download:
            raise FileNotFoundError(_missing_message(folder, "downloading is off (dataset.download=false)"))
        _download(Path(root), folder)
    return folder


def cifar10_fingerprint(root: str | Path, download: bool = False) -> str:
    """What the CIFAR-10 files under `root` are: `cifar10-official-…` for the official release, else `cifar10-…`,
    followed by a hash of the six files' md5 sums (computed once per process for unchanged files)."""
    folder = ensure_cifar10(root, download)
    sums = {name: _md5(folder / name) for name in ALL_FILES}
    digest = hashlib.sha256(repr(sorted(sums.items())).encode()).hexdigest()[:16]
    official = sums == ALL_FILES
    return f"cifar10-{'official-' if official else ''}{digest}"


def load_cifar10(root: str | Path, download: bool = False) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, test images, test labels): uint8 N×3×32×32 and int64 N.

    Missing files are handled as `ensure_cifar10` says; a label outside 0..9 is refused with the file's name.
    """
    folder = ensure_cifar10(root, download)
    differing = [name for name, md5 in ALL_FILES.items() if _md5(folder / name) != md5]
    if differing:
        warnings.warn(
            f"CIFAR-10 files in {folder} differ from the official release ({', '.join(differing)}): they load, "
            "but results are not comparable to published numbers",
            NotOfficialWarning,
            stacklevel=2,
        )
    train_x, train_y = _read_cached(folder.resolve(), tuple(TRAIN_FILES), _stamps(folder, TRAIN_FILES))
    test_x, test_y = _read_cached(folder.resolve(), tuple(TEST_FILES), _stamps(folder, TEST_FILES))
    return train_x, train_y, test_x, test_y


def _stamps(folder: Path, files: Iterable[str]) -> tuple[tuple[int, int], ...]:
    return tuple((st.st_size, st.st_mtime_ns) for st in ((folder / name).stat() for name in files))


def _read_batches(folder: Path, files: Iterable[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        path = folder / name
        try:
            with path.open("rb") as f:
                batch = BatchUnpickler(f, encoding="latin1").load()
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(batch["labels"], dtype=np.int64)
        except RefusedObject as e:
            raise ValueError(
                f"CIFAR-10 batch file {path} asks to build {e}, which no CIFAR-10 batch holds: refused, nothing of "
                "it was run; delete the folder and fetch the files again"
            ) from None
        except Exception as e:  # truncated, not a pickle, wrong keys or shape: all mean "bad file"
            raise ValueError(
                f"CIFAR-10 batch file {path} is truncated or unreadable ({type(e).__name__}: {e}); "
                "delete the folder and fetch the files again"
            ) from e
        if len(data) != len(batch_labels):
            raise ValueError(f"CIFAR-10 batch file {path} holds {len(data)} images but {len(batch_labels)} labels")
        bad = np.flatnonzero((batch_labels < 0) | (batch_labels >= NUM_CLASSES))
        if len(bad):
            raise ValueError(
                f"CIFAR-10 batch file {path}: label {batch_labels[bad[0]]} of image {bad[0]} is outside the classes "
                f"0..{NUM_CLASSES - 1} ({len(bad)} such labels in the file); fetch the files again"
            )
        images.append(torch.from_numpy(data))
        labels.append(torch.from_numpy(batch_labels))
    return torch.cat(images), torch.cat(labels)


class RefusedObject(pickle.UnpicklingError):
    """A pickle asked for a Python object that a CIFAR-10 batch does not hold (its message names it)."""


def _numpy_reconstruct() -> object:
    try:  # NumPy 2 (the official files name `numpy.core.multiarray`, which NumPy 2 keeps as an alias)
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles written by Python 3 use it for bytes, for the latin-1 codec only."""
    if encoding != "latin1":
        raise RefusedObject(f"_codecs.encode(..., {encoding!r})")
    return codecs.encode(text, "latin1")


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch and nothing else: dicts, lists, strings, bytes, numbers and NumPy arrays.

    A plain `pickle.load` runs whatever callable a file names; this one builds only NumPy's arrays (their class,
    dtype and reconstruction function) and bytes, and refuses any other global with `RefusedObject`."""

    ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("_codecs", "encode"): _latin1_bytes,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedObject(f"{module}.{name}") from None


def _download(root: Path, folder: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    from .fetch import download_once

    download_once(folder, lambda: download_and_extract_archive(URL, download_root=str(root), md5=ARCHIVE_MD5),
                  lambda e: _missing_message(folder, f"the download failed ({type(e).__name__}: {e})"))  # fmt: skip


def _missing_message(folder: Path, why: str) -> str:
    return (
        f"CIFAR-10 not found: expected the official python-pickle files in {folder}/ "
        f"(data_batch_1..5, test_batch), and {why}. Either run with dataset.download=true on a machine that "
        f"is online, or download {URL} yourself and extract it into {folder.parent}/. "
        "The data root is dataset.root (default: $LLBBENCH_DATA, else ./data)."
    )


def _md5(path: Path) -> str:
    stat = path.stat()
    return _md5_of(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _md5_of(path: Path, size: int, mtime_ns: int) -> str:
    """md5 of the file at `path`, remembered while its size and modification time stay the same: in this process,
    and across processes in the user's cache (`md5_cache_file`), so that each run of a sweep does not read the 180 MB
    again."""
    key = f"{path}|{size}|{mtime_ns}"
    known = _read_md5_cache().get(key)
    if isinstance(known, str) and re.fullmatch(r"[0-9a-f]{32}", known):
        return known
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    _remember_md5(key, digest.hexdigest())
    return digest.hexdigest()


def md5_cache_file() -> Path:
    """Where the md5 sums of CIFAR-10's files are remembered: `$LLBBENCH_CACHE` (a folder), else
    `$XDG_CACHE_HOME/llbbench`, else `~/.cache/llbbench`; a JSON object of path|size|mtime → md5."""
    chosen = os.environ.get("LLBBENCH_CACHE")
    folder = Path(chosen) if chosen else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llbbench"
    return folder / "md5.json"


def _read_md5_cache() -> dict[str, Any]:
    """The remembered sums (plain JSON: nothing in it is run); empty when missing or unreadable."""
    try:
        cache = json.loads(md5_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _remember_md5(key: str, md5: str) -> None:
    """Add one sum to the cache (atomically; a cache that cannot be written is only slower)."""
    file = md5_cache_file()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        entries = {k: v for k, v in _read_md5_cache().items() if Path(k.split("|")[0]).exists()}
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**entries, key: md5}))
        os.replace(tmp, file)
    except OSError:
        pass


@functools.lru_cache(maxsize=2)
def _read_cached(folder: Path, files: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> tuple:
    """`_read_batches`, remembered in this process while the files' sizes and modification times stay the same
    (a sweep's runs in one process read the files once). The tensors are shared: nothing writes into them."""
    return _read_batches(folder, files)
