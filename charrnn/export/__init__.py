"""A trained model in a form that runs without charrnn: ONNX (`to_onnx`: a step graph for any
ONNX runtime) or safetensors (`to_safetensors`: the weights and the checkpoint's fields, loaded
without pickle); what they share (`source`); and the rules of the file an export writes. The
third form, one HTML page that writes in any browser, is a page (`charrnn.pages.writer`);
`charrnn.api.export` is the one function that writes any of the three.

    charrnn export checkpoints/my-run --format onnx          # checkpoints/my-run/best.onnx
    charrnn.api.export("checkpoints/my-run", "html", "shakespeare.html", dtype="float16")
"""

from __future__ import annotations

from pathlib import Path

from charrnn.errors import BadValueError, os_reason
from charrnn.training import checkpoint

FORMATS = ("onnx", "safetensors", "html")
DTYPES = ("float32", "float16", "int8")  # how an HTML page stores its weights
SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors", "html": ".html"}


def check(format: str, dtype: str) -> None:
    if format not in FORMATS:
        raise BadValueError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if dtype not in DTYPES:
        raise BadValueError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")


def target(path: Path, format: str, out: Path | None) -> Path:
    """The file to write: `out`, or beside the checkpoint `path` with the format's suffix;
    never a directory or the checkpoint itself."""
    out = Path(out) if out is not None else path.with_suffix(SUFFIXES[format])
    if out.is_dir():
        raise BadValueError(f"-o {out}: is a directory; name a file")
    if out.exists() and out.resolve() == path.resolve():
        raise BadValueError(f"-o {out}: is the checkpoint being exported; name another file")
    return out


def save(out: Path, data: bytes) -> Path:
    """Write `out` atomically (a failed write leaves what was there); one line if it cannot be."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_atomic(out, data)
    except OSError as e:
        raise BadValueError(f"-o {out}: cannot write there ({os_reason(e)})") from None
    return out
