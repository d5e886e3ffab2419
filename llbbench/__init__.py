"""llbbench: LLb-SGD (Zheng et al., 2019), its baselines, and a harness that reproduces the paper."""

__version__ = "0.1.0"
