"""CIFAR-10 loading, subsets, folds and batching."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from llbbench import data
from llbbench.data.cifar import NotOfficialWarning, load_cifar10
from tests.conftest import write_cifar


def test_loads_the_official_layout_as_uint8(cifar_root):
    with pytest.warns(NotOfficialWarning, match="not comparable to published numbers"):
        train_x, train_y, test_x, test_y = load_cifar10(cifar_root)
    assert train_x.dtype == torch.uint8 and train_x.shape == (600, 3, 32, 32)
    assert test_x.shape == (200, 3, 32, 32) and train_y.dtype == torch.int64
    assert set(train_y.tolist()) == set(range(10)) and len(test_y) == 200


def test_a_truncated_batch_file_is_named_in_the_error(tmp_path):
    root = write_cifar(tmp_path, per_batch=20, test=20)
    path = root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(NotOfficialWarning), pytest.raises(ValueError, match="data_batch_3 is truncated or unreadable"):
        load_cifar10(root)


def test_stratified_subset_keeps_class_proportions_and_order():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)[
        torch.randperm(100, generator=torch.Generator().manual_seed(1))
    ]
    keep = data.stratified_subset(labels, 10)
    assert len(keep) == 10 and torch.equal(keep, keep.sort().values)
    assert torch.bincount(labels[keep], minlength=3).tolist() == [5, 3, 2]
    # the first images of each class, in stored order
    for c, q in enumerate([5, 3, 2]):
        assert torch.equal(keep[labels[keep] == c], (labels == c).nonzero().flatten()[:q])
    with pytest.raises(ValueError, match=r"dataset.subset=101 must lie in 1\.\.100 \(the size of the split\)"):
        data.stratified_subset(labels, 101)


def test_folds_partition_the_data_stratified_and_depend_only_on_the_seed():
    labels = torch.arange(103) % 10
    folds = data.fold_indices(labels, 5, seed=3)
    everything = torch.cat(folds).sort().values
    assert torch.equal(everything, torch.arange(103))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:
        per_class = torch.bincount(labels[f], minlength=10)
        assert per_class.max() - per_class.min() <= 1
    again = data.fold_indices(labels, 5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(folds, again, strict=True))
    other = data.fold_indices(labels, 5, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(folds, other, strict=True))


def test_build_splits_off_the_validation_fold(cifar_root):
    options = {"name": "cifar10", "root": str(cifar_root), "mean": [0.5] * 3, "std": [0.25] * 3}
    built = data.build(options, device=torch.device("cpu"), fold=1)
    assert len(built.train) == 480 and len(built.val) == 120 and len(built.test) == 200
    assert built.input_shape == (3, 32, 32) and built.num_classes == 10


def test_batches_are_normalized_slices_of_the_order():
    images = torch.randint(0, 256, (10, 3, 2, 2), dtype=torch.uint8)
    split = data.TensorSplit(images, torch.arange(10), torch.full((3, 1, 1), 0.5), torch.full((3, 1, 1), 0.25))
    order = data.epoch_order(10, seed=0, epoch=1)
    batches = list(split.batches(4, order))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[1]
    assert torch.equal(y, order[4:8])
    assert torch.allclose(x, (images[order[4:8]].float() / 255 - 0.5) / 0.25)
    assert [len(y) for _, y in split.batches(4, order, drop_last=True)] == [4, 4]
    assert torch.equal(order, data.epoch_order(10, seed=0, epoch=1))
    assert not torch.equal(order, data.epoch_order(10, seed=0, epoch=2))


def test_missing_files_are_downloaded_when_asked(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, md5):
        calls.append((url, md5))
        write_cifar(Path(download_root), per_batch=10, test=10)

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    with pytest.warns(NotOfficialWarning):
        train_x, *_ = load_cifar10(tmp_path, download=True)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")]
    assert len(train_x) == 50


def test_offline_download_names_the_path_and_both_ways(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path, download=True)
    message = str(info.value)
    assert f"{tmp_path / 'cifar-10-batches-py'}/" in message and "Network is unreachable" in message
    assert "dataset.download=true" in message and "cifar-10-python.tar.gz yourself" in message


def test_a_failed_download_is_not_tried_again_in_the_same_process(tmp_path, monkeypatch):
    """A sweep checks each of its runs before any starts: offline, the network is asked once, not once a run."""
    tries = []

    def offline(*args, **kwargs):
        tries.append(args)
        raise OSError("Network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    messages = []
    for _ in range(3):
        with pytest.raises(FileNotFoundError) as info:
            load_cifar10(tmp_path, download=True)
        messages.append(str(info.value))
    assert len(tries) == 1 and len(set(messages)) == 1 and "Network is unreachable" in messages[0]
    with pytest.raises(FileNotFoundError):
        load_cifar10(tmp_path / "elsewhere", download=True)
    assert len(tries) == 2  # another folder is another download


def test_the_md5_sums_are_remembered_across_processes_while_the_files_stay_the_same(tmp_path, monkeypatch):
    from llbbench.data import cifar

    monkeypatch.setenv("LLBBENCH_CACHE", str(tmp_path / "cache"))
    folder = write_cifar(tmp_path / "a") / "cifar-10-batches-py"
    first = cifar.cifar10_fingerprint(folder.parent)
    cached = json.loads(cifar.md5_cache_file().read_text())
    file = (folder / "test_batch").resolve()
    key = next(k for k in cached if k.startswith(f"{file}|"))
    assert cached[key] == hashlib.md5(file.read_bytes()).hexdigest()
    # another process finds the sum in the cache: a planted one is taken (the file is not read again) ...
    cifar._md5_of.cache_clear()
    cached[key] = "0" * 32
    cifar.md5_cache_file().write_text(json.dumps(cached))
    assert cifar.cifar10_fingerprint(folder.parent) != first
    # ... until the file changes (its modification time is part of the key): then it is read again
    cifar._md5_of.cache_clear()
    os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 1))
    assert cifar.cifar10_fingerprint(folder.parent) == first
    cifar.md5_cache_file().write_text("not json")  # a damaged cache only costs the reading
    cifar._md5_of.cache_clear()
    assert cifar.cifar10_fingerprint(folder.parent) == first


def test_a_sweep_reads_the_batch_files_once_per_process_until_they_change(tmp_path):
    from llbbench.data import cifar

    root = write_cifar(tmp_path)
    first, again = cifar.load_cifar10(root), cifar.load_cifar10(root)
    assert first[0] is again[0]  # read once
    rewritten = write_cifar(tmp_path, seed=1)  # new files: new stamps
    assert rewritten == root
    third = cifar.load_cifar10(root)
    assert third[0] is not first[0] and not torch.equal(third[0], first[0])
