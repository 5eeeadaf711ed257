"""The package's shape, checked: its import layers, no import cycles, and modules and
functions small enough to read top to bottom (docs/internals.md says why)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
MODULES = {
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
    for p in PACKAGE.rglob("*.py")
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60  # of a body, from its first statement; a command's parameter list is not counted
UI = ("rich", "typer", "click")  # what only the command line and the server show things with
PAGES = "charrnn.pages"  # written by the fronts: the command line, the server, and the Python facade
FRONTS = ("charrnn.cli", "charrnn.serve", "charrnn.pages")


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The modules a file imports (anywhere, or only at import time: not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # `if TYPE_CHECKING:` and the like still run at import time
        nodes = [n for top in nodes for n in ast.walk(top) if not isinstance(top, (ast.FunctionDef, ast.ClassDef))]
        nodes += [
            n
            for top in tree.body
            if isinstance(top, ast.ClassDef)
            for n in top.body
            if isinstance(n, ast.Import | ast.ImportFrom)
        ]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pkg import mod` runs mod (pkg is under way or done); `from pkg import name` runs pkg
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def test_nothing_below_the_command_line_and_the_server_shows_things():
    for name, path in MODULES.items():
        if name.startswith(FRONTS):
            continue
        found = imports(path, top_level_only=False)
        used = [m for m in found if m.split(".")[0] in UI or (m.startswith(PAGES) and name != "charrnn.api")]
        assert not used, f"{name} imports {used}"


def test_no_import_cycles():
    graph = {
        name: {m for m in imports(path, top_level_only=True) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt) :] + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_modules_and_functions_are_small_enough_to_read():
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") <= MAX_MODULE_LINES, f"{name}: {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.body[0].lineno + 1
                assert lines <= MAX_FUNCTION_LINES, f"{name}.{node.name}: a body of {lines} lines"
