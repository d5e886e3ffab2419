"""llbbench: LLb-SGD (Zheng et al., 2019), its baselines, and a harness that reproduces the paper."""

import importlib.metadata

try:
    __version__ = importlib.metadata.version("llbbench")  # pyproject.toml's, as installed
except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "0+unknown"
