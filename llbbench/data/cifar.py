"""CIFAR-10 from the official python-pickle files (`cifar-10-batches-py/`), as uint8 tensors."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

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
NUM_CLASSES = 10


class NotOfficialWarning(UserWarning):
    """The files load, but are not the official release: results are not comparable to published ones."""


def load_cifar10(root: str | Path, download: bool = False) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, test images, test labels): uint8 N×3×32×32 and int64 N.

    Missing files are downloaded (md5-checked) when `download` is true; otherwise, or offline, the
    `FileNotFoundError` names the expected folder and both ways to get the files.
    """
    folder = Path(root) / FOLDER
    expected = {**TRAIN_FILES, **TEST_FILES}
    if any(not (folder / name).is_file() for name in expected):
        if not download:
            raise FileNotFoundError(_missing_message(folder, "downloading is off (dataset.download=false)"))
        _download(Path(root), folder)
    differing = [name for name, md5 in expected.items() if _md5(folder / name) != md5]
    if differing:
        warnings.warn(
            f"CIFAR-10 files in {folder} differ from the official release ({', '.join(differing)}): they load, "
            "but results are not comparable to published numbers",
            NotOfficialWarning,
            stacklevel=2,
        )
    train_x, train_y = _read_batches(folder, TRAIN_FILES)
    test_x, test_y = _read_batches(folder, TEST_FILES)
    return train_x, train_y, test_x, test_y


def _read_batches(folder: Path, files: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        path = folder / name
        try:
            with path.open("rb") as f:
                batch = pickle.load(f, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(batch["labels"], dtype=np.int64)
        except Exception as e:  # truncated, not a pickle, wrong keys or shape: all mean "bad file"
            raise ValueError(
                f"CIFAR-10 batch file {path} is truncated or unreadable ({type(e).__name__}: {e}); "
                "delete the folder and fetch the files again"
            ) from e
        if len(data) != len(batch_labels):
            raise ValueError(f"CIFAR-10 batch file {path} holds {len(data)} images but {len(batch_labels)} labels")
        images.append(torch.from_numpy(data))
        labels.append(torch.from_numpy(batch_labels))
    return torch.cat(images), torch.cat(labels)


def _download(root: Path, folder: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, download_root=str(root), md5=ARCHIVE_MD5)
    except Exception as e:  # offline, refused, or a corrupted archive
        raise FileNotFoundError(_missing_message(folder, f"the download failed ({type(e).__name__}: {e})")) from e


def _missing_message(folder: Path, why: str) -> str:
    return (
        f"CIFAR-10 not found: expected the official python-pickle files in {folder}/ "
        f"(data_batch_1..5, test_batch), and {why}. Either run with dataset.download=true on a machine that "
        f"is online, or download {URL} yourself and extract it into {folder.parent}/. "
        "The data root is dataset.root (default: $LLBBENCH_DATA, else ./data)."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
