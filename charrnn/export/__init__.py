"""A trained model in a form that runs without charrnn: ONNX (a step graph for any ONNX
runtime), safetensors (the weights and the checkpoint's fields, loaded without pickle), or one
self-contained HTML page that writes text in any browser, offline.

    charrnn export checkpoints/my-run --format html -o shakespeare.html
    export(Path("checkpoints/my-run"), "onnx")      # -> checkpoints/my-run/best.onnx
"""

from __future__ import annotations

from pathlib import Path

from charrnn.errors import BadValueError, os_reason
from charrnn.training import checkpoint, runs

FORMATS = ("onnx", "safetensors", "html")
DTYPES = ("float32", "float16", "int8")  # how an HTML page stores its weights
SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors", "html": ".html"}


def export(checkpoint_path: Path, format: str, out: Path | None = None, *, dtype: str = "float16") -> Path:
    """Write the model of a checkpoint or run directory (its best.pt) as `format`; default
    `out`: beside the checkpoint, with the format's suffix. `dtype` is how an HTML page stores
    its weights (ONNX and safetensors keep float32). Returns the file written."""
    from charrnn.export.source import Source

    if format not in FORMATS:
        raise BadValueError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if dtype not in DTYPES:
        raise BadValueError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    path = runs.resolve_checkpoint(checkpoint_path)
    out = Path(out) if out is not None else path.with_suffix(SUFFIXES[format])
    if out.exists() and (out.is_dir() or out.resolve() == path.resolve()):
        raise BadValueError(f"-o {out}: is {'a directory' if out.is_dir() else 'the checkpoint itself'}; name a file")
    src = Source.read(path)
    data = _render(src, format, dtype)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_atomic(out, data)
    except OSError as e:
        raise BadValueError(f"-o {out}: cannot write there ({os_reason(e)})") from None
    return out


def _render(src, format: str, dtype: str) -> bytes:
    if format == "onnx":
        from charrnn.export.to_onnx import to_bytes
    elif format == "safetensors":
        from charrnn.export.to_safetensors import to_bytes
    else:
        from charrnn.export.to_html import to_bytes

        return to_bytes(src, dtype)
    return to_bytes(src)
