"""What the paper defines, in its order: its networks, its nine optimizers and their names, its initializations.
The report, `llbbench saddle` and the tables read them from here."""

from __future__ import annotations

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
