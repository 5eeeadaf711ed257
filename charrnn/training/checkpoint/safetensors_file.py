"""A checkpoint as a safetensors file (`charrnn export --format safetensors`): the weights as
tensors, every other field of the checkpoint as JSON in the header's metadata, and read back
with no pickle at all (a JSON header, then raw little-endian bytes), so a shared model cannot
run code when it is loaded.

    tensors, metadata = to_parts(payload)          # what the exporter writes
    payload = read(Path("model.safetensors"))      # what `files.load` returns for it

The file is the format of the `safetensors` library (8 bytes of header length, the JSON
header, the tensor bytes); this module reads it without that library, so that every
install of charrnn loads an exported model. A file is recognised by its content, not its name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from charrnn.errors import CheckpointError, first_line

SUFFIX = ".safetensors"
MAX_HEADER = 100_000_000  # bytes of JSON header a file may declare (the library's own bound)
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip
NAMES = {dtype: name for name, dtype in DTYPES.items()}
# a checkpoint's fields that only resuming training needs: an exported model leaves them out
RESUME_ONLY = ("optimizer", "rng", "hidden", "scaler", "ema")


def is_safetensors(path: Path) -> bool:
    """Whether a file is a safetensors file, by its content (its name where it is too short to
    tell): a plausible header length, then a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return Path(path).suffix == SUFFIX
    return int.from_bytes(head[:8], "little") <= MAX_HEADER and head[8:9] == b"{"


def to_parts(payload: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's payload (as `files.load` returns it) as the tensors and the string
    metadata of a safetensors file: "format" and "kind" as they are, every other field but the
    weights and what only resuming needs as JSON. Tied weights are stored twice (the format
    shares no memory between tensors)."""
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in payload["model"].items()}
    metadata = {}
    for key, value in payload.items():
        if key in ("model", *RESUME_ONLY):
            continue
        metadata[key] = value if key in ("format", "kind") else json.dumps(_plain(value), ensure_ascii=False)
    return tensors, metadata


def _plain(value):
    """A payload value as JSON holds it: tuples as lists, non-finite floats as strings JSON can
    hold ("inf", "nan"), which `read` turns back."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a checkpoint field holds a {type(value).__name__}, which JSON cannot")


def _unplain(value):
    if isinstance(value, dict):
        if value.keys() == {"float"} and value["float"] in ("inf", "-inf", "nan"):
            return float(value["float"])
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def read(path: Path) -> dict:
    """The checkpoint payload of a safetensors file, every tensor checked to lie whole inside
    the file; a truncated or damaged file is a one-line CheckpointError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    try:
        header, body = _header(data)
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("its metadata is not a table of strings")
        tensors = _tensors(header, body)
        payload = {k: v if k in ("format", "kind") else _unplain(json.loads(v)) for k, v in metadata.items()}
    except (ValueError, TypeError, KeyError, RuntimeError) as e:  # json's errors are ValueErrors
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({first_line(e)})") from None
    if "format" not in payload:
        raise CheckpointError(f"{path}: a safetensors file, but not a charrnn model (its metadata has no 'format')")
    payload["model"] = tensors
    return payload


def _header(data: bytes) -> tuple[dict, memoryview]:
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes, shorter than the header's length")
    n = int.from_bytes(data[:8], "little")
    if n > min(MAX_HEADER, len(data) - 8):
        raise ValueError(f"the header of {n:,} bytes runs past the end of the file")
    header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, memoryview(data)[8 + n :]


def _tensors(header: dict, body: memoryview) -> dict[str, torch.Tensor]:
    """Each tensor the header lists, from its bytes; the tensors must tile the body exactly."""
    tensors, spans = {}, []
    for name, entry in header.items():
        dtype = DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if dtype is not None else (None, None)
        if dtype is None or not _ints(shape, 0) or not _ints(offsets, 2, 2):
            raise ValueError(f"tensor {name!r} has a malformed entry")
        begin, end = offsets
        numel = math.prod(shape)
        if not 0 <= begin <= end <= len(body) or end - begin != numel * dtype.itemsize:
            raise ValueError(f"tensor {name!r} does not lie whole in the file")
        raw = bytearray(body[begin:end])  # its own copy: writable, and the file's bytes can go
        t = torch.frombuffer(raw, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(shape)
        spans.append((begin, end))
    at = 0
    for begin, end in sorted(spans):
        if begin != at:
            raise ValueError("its tensors overlap or leave gaps")
        at = end
    if at != len(body):
        raise ValueError(f"{len(body) - at:,} bytes after the last tensor")
    return tensors


def _ints(value, least: int, most: int | None = None) -> bool:
    """A list of non-negative ints, of a length in [least, most]."""
    return (
        isinstance(value, list)
        and least <= len(value) <= (most if most is not None else len(value))
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )
