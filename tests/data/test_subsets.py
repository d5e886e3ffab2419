"""Imagenette and Imagewoof (read as image folders, through torchvision's class, downloaded from a local
archive) and `dataset.classes` (ImageNet-100 and named lists): what a run reads, and the errors."""

from __future__ import annotations

import functools
import hashlib
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import Imagenette

from llbbench import data
from llbbench.config import ConfigError, check
from llbbench.data import fetch
from llbbench.data.classes import IMAGENET100
from llbbench.records.run import identity

WNIDS = sorted(Imagenette._WNID_TO_CLASS)  # torchvision's ten Imagenette classes


def write_folder(root: Path, classes, train: int = 2, val: int = 1, suffix: str = ".JPEG") -> Path:
    """Tiny JPEGs in ImageNet's layout, one colour per class."""
    for split, count in (("train", train), ("val", val)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((12, 16, 3), (7 * c + i) % 256, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{name}_{i}{suffix}", format="JPEG")
    return root


def options(root: Path, name: str = "imagenette", **extra) -> dict:
    return {"name": name, "root": str(root), "train_split": "train", "test_split": "val", "resize": 16,
            "crop": 16, "num_workers": 0, "mean": [0.5] * 3, "std": [0.25] * 3, **extra}  # fmt: skip


@pytest.fixture
def served(tmp_path):
    """A local HTTP server of `tmp_path/www`: `served(folder)` archives `folder` there as a .tgz (its name at the
    top, as fast.ai's archives) and gives its URL and md5."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def archive(folder: Path) -> tuple[str, str]:
        out = www / f"{folder.name}.tgz"
        with tarfile.open(out, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        return f"http://127.0.0.1:{server.server_address[1]}/{out.name}", hashlib.md5(out.read_bytes()).hexdigest()

    yield archive
    server.shutdown()


def test_imagenette_reads_the_same_through_torchvision_and_as_a_folder(tmp_path):
    root = write_folder(tmp_path / "imagenette2-160", WNIDS)
    fetch.check_with_torchvision(root)  # the same classes and (image, label) pairs, both splits
    built = data.build(options(root), device=data.torch.device("cpu"), fold=0, folds=2)
    assert built.num_classes == 10 and len(built.train) + len(built.val) == 20 and len(built.test) == 10
    theirs = Imagenette(str(tmp_path), split="val", size="160px")
    assert [label for _, label in theirs._samples] == built.test.labels.tolist()
    # an image torchvision's class does not read (not .JPEG) is caught, not silently read by one side only
    Image.new("RGB", (8, 8)).save(root / "val" / WNIDS[0] / "extra.png")
    with pytest.raises(ValueError, match=r"reads differently through torchvision.datasets.Imagenette"):
        fetch.check_with_torchvision(root)


def test_imagenette_downloads_through_torchvision(tmp_path, monkeypatch, served):
    source = write_folder(tmp_path / "source" / "imagenette2-160", WNIDS)
    url, md5 = served(source)
    monkeypatch.setitem(Imagenette._ARCHIVES, "160px", (url, md5))  # torchvision's class, a local archive
    root = tmp_path / "data" / "imagenette2-160"
    found = data.fingerprint(options(root, download=True))
    assert found == data.fingerprint(options(source)) and (root / "val" / WNIDS[9]).is_dir()
    assert data.build(options(root, download=True), device=data.torch.device("cpu")).num_classes == 10


def test_imagewoof_downloads_its_fastai_archive(tmp_path, monkeypatch, served):
    source = write_folder(tmp_path / "source" / "imagewoof2-160", ["n02086240", "n02087394", "n02088364"])
    url, _ = served(source)
    monkeypatch.setitem(fetch.ARCHIVES["imagewoof"], "imagewoof2-160", url)
    root = tmp_path / "data" / "imagewoof2-160"
    assert data.fingerprint(options(root, "imagewoof", download=True)) == data.fingerprint(options(source))


def test_a_failed_or_impossible_download_says_how_to_get_the_data(tmp_path, monkeypatch, served):
    url, _ = served(write_folder(tmp_path / "imagenette2-160", WNIDS[:1]))
    monkeypatch.setitem(Imagenette._ARCHIVES, "160px", (url.replace(".tgz", "-absent.tgz"), "0" * 32))
    with pytest.raises(FileNotFoundError, match=r"could not download imagenette .*unpack it there"):
        data.build(options(tmp_path / "dl" / "imagenette2-160", download=True), device=data.torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match=r"not mine: set dataset.root=.*imagenette2-160"):
        data.fingerprint(options(tmp_path / "mine", download=True))
    with pytest.raises(FileNotFoundError, match="downloads Imagenette and Imagewoof only"):
        data.fingerprint(options(tmp_path / "imagenet", "imagenet", download=True))


def test_classes_keeps_the_named_folders_in_sorted_order(tmp_path):
    root = write_folder(tmp_path / "folder", ["a", "b", "c", "d"])
    built = data.build(options(root, "imagefolder", classes=["d", "b"]), device=data.torch.device("cpu"))
    assert built.num_classes == 2 and len(built.train) == 4 and len(built.test) == 2
    assert sorted({p.parent.name for p in built.train.paths}) == ["b", "d"]
    assert built.train.labels.tolist() == [0, 0, 1, 1]  # b, then d
    whole, some = (data.fingerprint(options(root, "imagefolder", classes=c)) for c in (None, ["b", "d"]))
    assert whole != some and some.startswith("imagefolder-6-")
    with pytest.raises(ValueError, match=r"lacks 1 of the 2 class folders dataset.classes names: e"):
        data.build(options(root, "imagefolder", classes=["a", "e"]), device=data.torch.device("cpu"))


def test_classes_100_is_imagenet_100(tmp_path):
    root = write_folder(tmp_path / "imagenet", [*IMAGENET100, "n01440764", "n15075141"], train=1, val=1)
    built = data.build(options(root, "imagenet", classes=100), device=data.torch.device("cpu"))
    assert built.num_classes == 100 and len(built.train) == 100
    assert {p.parent.name for p in built.test.paths} == set(IMAGENET100)
    (root / "val" / IMAGENET100[5] / f"{IMAGENET100[5]}_0.JPEG").unlink()
    (root / "val" / IMAGENET100[5]).rmdir()
    with pytest.raises(ValueError, match=f"lacks 1 of the 100 class folders.*{IMAGENET100[5]}"):
        data.build(options(root, "imagenet", classes=100), device=data.torch.device("cpu"))


BAD = [("7", "no fixed class list: use 100"), ("[a,a]", "names a more than once"), ("[]", "is not a class selection")]


@pytest.mark.parametrize(("value", "words"), BAD)
def test_a_bad_class_selection_is_one_message(make_config, image_root, value, words):
    cfg = make_config("dataset=imagenet", f"dataset.root={image_root}", f"dataset.classes={value}")
    with pytest.raises(ConfigError, match=words):
        check(cfg)


def test_all_classes_leave_the_identity_as_before(make_config, image_root):
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(make_config("dataset=imagenet", f"dataset.root={image_root}"), resolve=True)
    assert plain["dataset"]["classes"] is None
    before = {**plain, "dataset": {k: v for k, v in plain["dataset"].items() if k != "classes"}}
    assert identity(plain) == identity(before)
    chosen = {**plain, "dataset": {**plain["dataset"], "classes": ["cat", "dog"]}}
    assert identity(chosen)["dataset"]["classes"] == ["cat", "dog"]
