"""`charrnn sample`: text from a trained model to stdout, streamed as it is written."""

from __future__ import annotations

from typing import Annotated

import typer

from charrnn.cli.console import read_stdin, utf8_stdout, warn_unk
from charrnn.cli.errors import err, fail, quiet_broken_pipe
from charrnn.cli.options import DeviceOpt, Given, NewestCheckpointArg, given, with_options
from charrnn.config import SampleConfig

Separator = Annotated[
    str,
    typer.Option(
        "--separator",
        show_default=False,
        help="Printed between samples (default: a blank line), and between --documents (default: as the "
        "corpus separated them).",
    ),
]


Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", metavar="", help="Nothing on stderr but errors (not which checkpoint it uses).")
]


@with_options(SampleConfig)
def sample_cmd(
    ctx: typer.Context,
    checkpoint_path: NewestCheckpointArg = None,
    opts: Given = None,
    separator: Separator = "\n\n",
    device: DeviceOpt = "cpu",
    quiet: Quiet = False,
):
    """Generate text from a trained model to stdout, streamed as it is written.

    [bold]Examples[/bold]

      charrnn sample --prime "ROMEO:" --temp 0.8 --length 500 --seed 7

      echo "ROMEO:" | charrnn sample checkpoints/my-run --length 500 | tee out.txt

      charrnn sample --temp 0 --length 200            [dim]# greedy: always the likeliest character[/dim]

      charrnn sample --num-samples 4 --stop $'\\n\\n'   [dim]# four paragraphs[/dim]

      charrnn sample --num-samples 32 --precision bf16 --length 2000 > many.txt

      charrnn sample checkpoints/fortunes --documents 3      [dim]# three whole fortunes[/dim]

      charrnn sample checkpoints/names --documents 10 --prime K --max-length 12

      charrnn sample checkpoints/names --label French --documents 9 --separator ' '

      charrnn sample checkpoints/comments --prime "I think" --length 50   [dim]# a word model: 50 tokens[/dim]
    """
    from charrnn import api  # see the note on lazy imports in charrnn.cli.app

    v = opts.values
    model = api.load(checkpoint_path, device=device, precision=v["precision"])  # before stdin is read
    if checkpoint_path is None and not quiet:  # the newest run: say which it is
        err.print(f"using {model.path}", soft_wrap=True)
    if (v["min_length"] is not None or v["max_length"] is not None) and v["documents"] is None:
        fail("--min-length and --max-length go with --documents", 2)
    over = {"prime": read_stdin() if v["prime"] is None else v["prime"]}
    if v["documents"] is not None and given(ctx, "separator"):
        over["doc_separator"] = separator
    config = opts.of(SampleConfig, **over)
    warn_unk(model.vocab, config.prime, config.unknown, "the prime text")
    write(model.pieces(config), config.num_samples, separator)


def write(stream, samples: int, separator: str) -> None:
    """The first sample streamed to stdout as it is written, the others after it."""
    out = utf8_stdout()
    rest: list[list[str]] = [[] for _ in range(samples - 1)]  # printed after the first, which streams
    try:
        for pieces in stream:
            if pieces[0]:
                out.write(pieces[0])
                out.flush()
            for buf, piece in zip(rest, pieces[1:], strict=True):
                buf.append(piece)
        for buf in rest:
            out.write(separator + "".join(buf))
        out.write("\n")
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
