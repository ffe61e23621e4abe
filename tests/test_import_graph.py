"""The package's import graph, read with ``ast``: no cycles, and only the CLI reaches into commands/.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:``, which never run. ``from . import x`` is an
edge to the submodule ``x`` when there is one, else to the package itself. A submodule's implicit
import of its own parent package is not an edge: Python finishes the parent first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import rolesanywhere_signer

PACKAGE = "rolesanywhere_signer"
ROOT = Path(rolesanywhere_signer.__file__).resolve().parent
#: the entry point may name commands (it registers them); nothing else may import them
ALLOWED_INTO_COMMANDS = {f"{PACKAGE}.cli", f"{PACKAGE}.commands"}


def module_names() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PACKAGE, *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    yield from _imports(node)


def edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [source]
            targets += [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules]
            if not node.module and len(targets) > 1:
                targets = targets[1:]  # "from . import x": x is the dependency, the package is its parent
        for target in targets:
            if target in modules and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: edges(name, path, modules) for name, path in modules.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_is_acyclic() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(m.removeprefix(PACKAGE + ".") for m in cycle or [])


def test_only_the_cli_imports_commands() -> None:
    offenders = {
        name: sorted(t for t in targets if t.startswith(f"{PACKAGE}.commands"))
        for name, targets in graph().items()
        if not name.startswith(f"{PACKAGE}.commands") and name not in ALLOWED_INTO_COMMANDS
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_graph_reader_sees_lazy_imports_and_finds_cycles() -> None:
    """The checker itself: a function-level import is an edge, a TYPE_CHECKING one is not."""
    g = graph()
    assert f"{PACKAGE}.backends.pkcs11" in g[f"{PACKAGE}.backends"]  # imported inside a function
    assert f"{PACKAGE}.keytypes" in g[f"{PACKAGE}.signer"]
    assert f"{PACKAGE}.signer" not in g[f"{PACKAGE}.backends"]  # only under TYPE_CHECKING there
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
