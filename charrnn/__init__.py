"""charrnn: a character-level RNN text generator for any UTF-8 text.

    import charrnn
    model = charrnn.load("checkpoints/my-run")
    print(model.generate("ROMEO:", length=300, seed=7))

The names below come from `charrnn.api` (and the errors from `charrnn.errors`); they are
imported on first use, so that `import charrnn` and the command's --help do not wait for torch.
"""

__version__ = "0.1.0"

_API = ("load", "train", "Model", "Score")
_ERRORS = ("CharRNNError", "BadValueError", "InputError", "CheckpointError", "DeviceError", "TrainingError",
           "UnknownCharacterError")  # fmt: skip
__all__ = [*_API, *_ERRORS, "SampleConfig", "__version__"]


def __getattr__(name: str):
    if name in _API:
        from charrnn import api

        return getattr(api, name)
    if name in _ERRORS:
        from charrnn import errors

        return getattr(errors, name)
    if name == "SampleConfig":
        from charrnn.config import SampleConfig

        return SampleConfig
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
