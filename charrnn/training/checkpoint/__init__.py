"""The one owner of the checkpoint file: its typed schema (`schema`), atomic writes and safe
loads (`files`), the rules of resuming from it (`resume`), and what `info` and the report show
of it (`describe`). Nothing outside this package reads a checkpoint's payload by its keys.

    ckpt = read(run_dir / "last.pt")               # a Checkpoint
    write(ckpt, run_dir / "copy.pt")
"""

from charrnn.training.checkpoint.describe import config_fields, describe, provenance_rows, summary
from charrnn.training.checkpoint.files import (
    FORMAT,
    VERSION,
    kept,
    kind_of,
    load,
    provenance,
    remove_leftovers,
    save,
    write_atomic,
)
from charrnn.training.checkpoint.resume import (
    RESUME_KEYS,
    carried_state,
    check_not_behind,
    check_resumes_on,
    resume_config,
)
from charrnn.training.checkpoint.schema import Checkpoint, TrainState, damaged_state, load_model, read, write

__all__ = [
    "FORMAT", "RESUME_KEYS", "VERSION", "Checkpoint", "TrainState", "carried_state", "check_not_behind",
    "check_resumes_on", "config_fields", "damaged_state", "describe", "kept", "kind_of", "load", "load_model",
    "provenance", "provenance_rows", "read", "remove_leftovers", "resume_config", "save", "summary", "write",
    "write_atomic",
]  # fmt: skip
