"""charrnn: a character-level RNN text generator for any UTF-8 text."""

__version__ = "0.1.0"
