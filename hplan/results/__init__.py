"""The results command: every table README.md and docs/results.md show, regenerated from one
committed definition (``benchmarks/results.toml``) by ``hplan results``."""
