"""The package version (one place; ``tagindex.__version__`` re-exports it)."""

__version__ = "0.1.0"
