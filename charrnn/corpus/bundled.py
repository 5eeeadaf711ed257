"""The corpora that ship inside the package, so that a fresh install has something to learn:

    charrnn train tinyshakespeare          # no file of that name here: the bundled one
    charrnn corpora                        # what is bundled

A real file or directory of the same name always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import InputError

HERE = Path(__file__).resolve().parent.parent / "corpora"


@dataclass(frozen=True)
class Bundled:
    name: str
    file: str  # in charrnn/corpora/
    sha256: str
    source: str

    @property
    def path(self) -> Path:
        return HERE / self.file


CORPORA = {
    c.name: c
    for c in (
        Bundled(
            name="tinyshakespeare",
            file="tinyshakespeare.txt",
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            source="char-rnn's tinyshakespeare (github.com/karpathy/char-rnn): 40,000 lines of Shakespeare",
        ),
    )
}


def text_path(name: str | Path) -> Path:
    """The text file an input names: the path itself where it exists, else the bundled corpus
    of that name. A name that is neither is a one-line InputError listing the bundled names."""
    path = Path(name)
    if path.exists():
        return path
    if str(name) in CORPORA:
        return CORPORA[str(name)].path
    raise InputError(f"{name}: no such file, and no bundled corpus of that name (bundled: {', '.join(CORPORA)})")
