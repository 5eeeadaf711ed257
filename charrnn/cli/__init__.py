"""The `charrnn` command (`charrnn.cli.app`); `main` is the console script."""

from charrnn.cli.app import app, main

__all__ = ["app", "main"]
