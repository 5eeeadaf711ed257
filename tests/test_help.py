"""--help in an 80-column terminal, the default width of most: nothing wider than the terminal,
every example on a line of its own, every paragraph whole, every default whole, the options
in panels with the common ones first, and `train --help` short enough to read."""

import re

import pytest
import typer
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.cli.help import paragraphs, plain

RUNNER = CliRunner()

COMMANDS = [
    [], ["preprocess"], ["corpora"], ["train"], ["sample"], ["eval"], ["info"], ["visualize"], ["report"],
    ["serve"], ["export"], ["classify"], ["classify", "train"], ["classify", "predict"], ["classify", "eval"],
]  # fmt: skip


def command(path: list[str]):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name] if hasattr(cmd, "commands") else cmd
    return cmd


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "charrnn")
def test_help_reads_well_at_80_columns(path):
    r = RUNNER.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    out = r.output
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out  # nothing cut short
    doc = command(path).callback.__doc__
    examples = False
    for p in paragraphs(doc or ""):
        if p.strip() in ("Examples", "Example"):
            examples = True
            continue
        if examples:  # each example command whole on one line
            for line in p.splitlines():
                cmd = line.strip().split("  #")[0].strip()
                assert any(row.strip().startswith(cmd) for row in out.splitlines()), cmd
        else:  # a paragraph is re-wrapped, never broken mid-phrase into fragments
            assert words(p) in words(out), p
    for default in re.findall(r"\[default: ([^\]]*)\]", out):
        assert default and not default.endswith(("…", "...")), default


def test_train_help_is_short_and_starts_with_what_people_reach_for():
    out = RUNNER.invoke(app, ["train", "--help"], env={"COLUMNS": "80"}).output
    lines = out.splitlines()
    assert len(lines) <= 150
    panels = [line[:-1] for line in lines if re.fullmatch(r"[A-Z][a-z ]+:", line)]
    assert panels[:4] == ["Examples", "Arguments", "Run", "Model"], panels
    run = out.split("\nRun:\n")[1].split("\n\n")[0]
    assert run.index("--preset") < run.index("--time-limit") < run.index("--max-steps")
    assert out.index("--preset") < out.index("--doc-sep") and out.index("--max-steps") < out.index("--labels")
    assert "the recipe below" in out and "Fine-tuning (--init-from RUN)" in out.split("Presets")[1]


def test_help_is_plain_text_without_markup():
    for path in COMMANDS:
        out = RUNNER.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}).output
        assert plain(out) == out and "[/" not in out and "╭" not in out
