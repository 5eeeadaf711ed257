"""A model as a safetensors file: its weights (float32) as tensors, and the checkpoint's other
fields (model and train config, vocabulary, tokenizer, labels, corpus record...) as JSON in
the header's metadata (`charrnn.training.checkpoint.safetensors_file` lays them out).

    charrnn export checkpoints/my-run --format safetensors -o my-model.safetensors
    charrnn sample my-model.safetensors --prime "ROMEO:"

Written with the `safetensors` library (the reference writer); charrnn reads the file back
with no library and no pickle, so `load`, `sample`, `serve` and `info` take it as they take a
checkpoint, and it cannot run code when loaded. What only resuming training needs
(optimizer, RNG states, carried state) is left out: an exported model samples, it does not resume.
"""

from __future__ import annotations

from charrnn.export.source import Source, optional
from charrnn.training.checkpoint import safetensors_file


def to_bytes(src: Source) -> bytes:
    lib = optional("safetensors.torch", "--format safetensors")
    tensors, _ = safetensors_file.to_parts({"model": src.payload["model"]})
    return lib.save(tensors, metadata=src.metadata())
