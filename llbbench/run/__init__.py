"""One run: `setup` builds its parts from the typed config, `loop` trains and evaluates, `checkpoint` saves and
restores where it stands, `execution` takes its lock and decides to skip, resume or train, and records it."""

from .execution import NoSpace, RankFailed, execute, run
from .loop import Interrupted, evaluate, train
from .setup import Setup, prepare

__all__ = ["Interrupted", "NoSpace", "RankFailed", "Setup", "evaluate", "execute", "prepare", "run", "train"]
