"""The version odelab reports (kept equal to pyproject.toml's by tests/test_architecture.py)."""

__version__ = "0.1.0"
