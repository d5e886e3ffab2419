"""What the paper defines, in its order: its networks, its nine optimizers and their names, its initializations,
and the stand-ins for Fig. 8's analytic saddles. The report, `llbbench saddle` and the tables read them from
here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

NETWORKS = ("resnet34", "resnet50", "alexnet", "vgg16", "googlenet", "resnet152", "smallcnn")
PAPER_NETWORKS = NETWORKS[:6]  # the paper's six (smallcnn is ours: the quick start)
OPTIMIZERS = ("llb", "sgd", "pathsgd", "nag", "adagrad", "adam", "adadelta", "rmsprop", "esgd")
OPTIMIZER_NAMES = {
    "llb": "LLb-SGD",
    "sgd": "SGD",
    "pathsgd": "Path-SGD",
    "nag": "NAG",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adadelta": "Adadelta",
    "rmsprop": "RMSProp",
    "esgd": "ESGD",
}
INITS = ("uniform", "normal", "xavier", "msra", "default")


def ordered(values: Iterable[Any], order: Iterable[Any]) -> list[Any]:
    """`values` (distinct) in the paper's `order` first, then any others sorted."""
    values = list(dict.fromkeys(values))
    known = [v for v in order if v in values]
    return known + sorted((v for v in values if v not in known), key=str)


# Fig. 8's analytic saddles (the paper does not give its functions): each a title and f(p) of a point p = (x, y)
# (tensors or arrays), shifted to be positive wherever a trajectory goes (|y| ≤ 3), as the loss LLb-SGD reads
# must be; every optimizer that needs no network starts at SADDLE_START and takes SADDLE_STEPS steps
SADDLES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "plain": ("f = 10 + x² − y²", lambda p: 10 + p[0] ** 2 - p[1] ** 2),
    "badly_scaled": ("f = 2 + 0.05x² − y² + 0.25y⁴", lambda p: 2 + 0.05 * p[0] ** 2 - p[1] ** 2 + 0.25 * p[1] ** 4),
}
SADDLE_START = (1.0, 0.01)
SADDLE_STEPS = 200
SADDLE_RATE = 0.05  # one step size for every optimizer on them (Adadelta: its usual 1.0)
