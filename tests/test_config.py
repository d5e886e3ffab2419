"""Every entry of every config group composes and builds."""

from __future__ import annotations

import pytest

from llbbench import run as one_run
from llbbench.config import CONFIG_PACKAGE, config_dir

GROUPS = ("dataset", "model", "optimizer", "init")
ENTRIES = [(g, p.stem) for g in GROUPS for p in sorted((config_dir() / g).glob("*.yaml"))]
EXPERIMENTS = [p.stem for p in sorted((config_dir() / "experiment").glob("*.yaml"))]


CONTROLS = {"sgd_inverse_time": "sgd", "sgd_cosine": "sgd", "llb_global": "llb"}  # optimizer entries of the controls


@pytest.mark.parametrize(("group", "entry"), ENTRIES)
def test_every_group_entry_composes_and_builds(make_config, image_root, group, entry):
    folder = group == "dataset" and entry != "cifar10"
    extra = [f"dataset.root={image_root}", "dataset.num_workers=0"] if folder else []
    cfg = make_config(f"{group}={entry}", *extra)
    assert cfg[group].name == CONTROLS.get(entry, entry)
    setup = one_run.prepare(cfg)
    assert setup.spec.name == cfg.optimizer.name
    assert len(setup.data.train) + len(setup.data.val) == (18 if folder else 600)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(make_config, experiment):
    cfg = make_config(f"experiment={experiment}")
    assert cfg.train.epochs >= 1


def test_every_optimizer_yaml_names_a_registered_optimizer():
    from llbbench import optim

    entries = sorted(p.stem for p in (config_dir() / "optimizer").glob("*.yaml"))
    assert sorted(set(entries) - set(CONTROLS)) == optim.names()


def test_the_controls_are_their_optimizer_with_a_schedule_or_one_global_rate(make_config):
    cosine, inverse, shared = (make_config(f"optimizer={c}") for c in ("sgd_cosine", "sgd_inverse_time", "llb_global"))
    assert (cosine.optimizer.name, cosine.train.schedule) == ("sgd", "cosine")
    assert (inverse.optimizer.name, inverse.train.schedule) == ("sgd", "inverse_time")
    assert (shared.optimizer.name, shared.optimizer.groups, shared.train.schedule) == ("llb", "global", "constant")
    assert make_config("optimizer=sgd_cosine", "train.schedule=exponential").train.schedule == "exponential"


def test_fold_none_trains_on_everything(make_config):
    setup = one_run.prepare(make_config("fold=none"))
    assert setup.data.val is None and len(setup.data.train) == 600


@pytest.mark.parametrize(
    ("dataset", "model", "optimizer", "lr", "weight_decay"),
    [
        ("cifar10", "resnet34", "llb", 0.1, 5e-4),
        ("cifar10", "alexnet", "sgd", 0.01, 5e-4),  # an ImageNet network keeps its values on CIFAR-10
        ("cifar10", "googlenet", "llb", 0.1, 2e-4),
        ("imagenet", "alexnet", "nag", 0.01, 5e-4),
        ("imagenet", "vgg16", "llb", 0.01, 5e-4),
        ("imagenet", "googlenet", "sgd", 0.1, 2e-4),
        ("imagenet", "resnet152", "llb", 0.1, 1e-4),
        ("imagenet", "resnet152", "adam", 1e-3, 1e-4),
        ("imagenet", "alexnet", "esgd", 0.1, 5e-4),
    ],
)
def test_table1_values_follow_the_network(dataset, model, optimizer, lr, weight_decay):
    """docs/scales.md: the SGD family's α0 and every optimizer's weight decay depend on the network, on any
    dataset; the epochs and batch size on the dataset."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={dataset}", f"model={model}", f"optimizer={optimizer}"])
    assert cfg.optimizer.lr == lr and cfg.optimizer.weight_decay == weight_decay
    assert (cfg.train.epochs, cfg.train.batch_size) == ((90, 256) if dataset == "imagenet" else (100, 128))


def test_the_config_types_every_dataset_the_loader_knows():
    from llbbench import data
    from llbbench.config import DATASET_SCHEMAS

    assert sorted(DATASET_SCHEMAS) == sorted(data.names())


@pytest.mark.parametrize("dataset", ["cifar10", "imagenette"])
def test_the_data_fingerprint_is_computed_once_and_not_from_itself(make_config, image_root, dataset, monkeypatch):
    """`${data_fingerprint:}` reads the dataset's other options: resolving the whole node from within it would call
    it again, nested until the recursion limit (with an offline download tried at each level)."""
    from llbbench import data

    seen = []
    real = data.fingerprint

    def counted(options):
        seen.append(dict(options))
        return real(options)

    monkeypatch.setattr(data, "fingerprint", counted)
    extra = [f"dataset.root={image_root}"] if dataset != "cifar10" else []
    cfg = make_config(f"dataset={dataset}", *extra)
    found = cfg.dataset.fingerprint
    assert found != data.UNAVAILABLE and found == real(dict(seen[0]))
    assert len(seen) == 1 and "fingerprint" not in seen[0]
