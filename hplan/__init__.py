"""hplan: hierarchical planning in learned latent space, with safety stress tests."""

__version__ = "0.1.0"
