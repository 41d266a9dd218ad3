"""Imports point one way: a ratchet on the import cycles inside src/fastserve.

The import graph is read from the source (ast), not by importing it. Three graphs:

- module level: the imports that run when a module is imported (top level, class bodies, ``try``
  and ``if`` blocks), minus ``if TYPE_CHECKING:`` blocks, which never run;
- all: the module-level imports plus the ones inside functions (deferred imports run later, but
  a cycle hidden in a function is still a cycle in the design);
- typing: all of the above plus the ``if TYPE_CHECKING:`` imports (annotations that name a class
  of a module that imports this one: the protocol <-> cycle <-> server circle of shared/DESIGN.md
  lives only here today; the WebSocket modules left it when they declared what they take from the
  HTTP side as typing.Protocols, websocket/carrier.py).

Implicit imports of parent packages (``fastserve/__init__.py`` imports the server) are not counted.

A cycle is reported as a strongly connected component (the modules that all reach each other).
Each graph's set of cycles must equal its allowlist below: a new cycle fails; when a refactor
breaks one up, the test fails until the allowlist is shrunk to match, so it only ever shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "fastserve"
SOURCE = Path(__file__).resolve().parent.parent / "src" / PACKAGE

# The cycles left, as strongly connected components. The protocol <-> cycle <-> server <-> session
# circle of the TYPE_CHECKING graph went with the architecture refactor's first step: ServerState
# moved to state.py, and the cycle names the connection by its contract (asgi/contracts.py).
ALLOWED_MODULE_LEVEL: set[frozenset[str]] = set()
ALLOWED_WITH_DEFERRED: set[frozenset[str]] = set()
ALLOWED_WITH_TYPE_CHECKING: set[frozenset[str]] = set()

def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, modules: dict) -> list[str]:
    """The fastserve modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [_nearest(alias.name, modules) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    found = []
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        found.append(submodule if submodule in modules else _nearest(target, modules))
    return found


def _nearest(name: str, modules: dict) -> str:
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, modules: dict) -> tuple[set[str], set[str], set[str]]:
    """(module-level imports, imports inside functions, TYPE_CHECKING imports) of one module."""
    is_package = path.name == "__init__.py"
    module_level: set[str] = set()
    deferred: set[str] = set()
    typing_only: set[str] = set()

    def visit(nodes: list[ast.stmt], in_function: bool) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                (deferred if in_function else module_level).update(resolve(module, is_package, node, modules))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in ast.walk(node):  # this branch never runs
                    if isinstance(child, (ast.Import, ast.ImportFrom)) and child not in node.orelse:
                        typing_only.update(resolve(module, is_package, child, modules))
                visit(node.orelse, in_function)
            else:
                for name in ("body", "orelse", "finalbody", "handlers", "cases"):
                    children = getattr(node, name, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.AST)], in_function)

    visit(ast.parse(path.read_text(), str(path)).body, False)
    for found in (module_level, deferred, typing_only):
        found.discard(module)
    return module_level, deferred, typing_only


def graphs() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    modules = all_modules()
    module_level, with_deferred, with_typing = {}, {}, {}
    for module, path in modules.items():
        now, later, typing_only = imports_of(module, path, modules)
        module_level[module] = now
        with_deferred[module] = now | later
        with_typing[module] = now | later | typing_only
    return module_level, with_deferred, with_typing


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def describe(found: set[frozenset[str]]) -> str:
    return "\n".join("  " + " <-> ".join(sorted(c)) for c in sorted(found, key=sorted)) or "  (none)"


def test_the_graph_is_read():
    module_level, with_deferred, with_typing = graphs()
    assert "fastserve.asgi.contracts" in with_typing["fastserve.asgi.http_cycle"]
    assert "fastserve.asgi.http_cycle" in module_level["fastserve.http1.connection"]
    assert "fastserve.http1.connection" not in module_level["fastserve.asgi.http_cycle"]  # TYPE_CHECKING only
    assert "fastserve.websocket" in with_deferred["fastserve.server"]  # inside _ws_handler()
    assert "fastserve.websocket" not in module_level["fastserve.server"]


def test_module_level_import_cycles_are_the_recorded_ones():
    found = cycles(graphs()[0])
    print(f"module-level import cycles:\n{describe(found)}")
    assert found - ALLOWED_MODULE_LEVEL == set(), f"new import cycle(s):\n{describe(found - ALLOWED_MODULE_LEVEL)}"
    assert found == ALLOWED_MODULE_LEVEL, (
        f"cycle(s) gone: shrink ALLOWED_MODULE_LEVEL to\n{describe(found)}")


def test_import_cycles_with_deferred_imports_are_the_recorded_ones():
    found = cycles(graphs()[1])
    print(f"import cycles, deferred (function-level) imports included:\n{describe(found)}")
    assert found - ALLOWED_WITH_DEFERRED == set(), f"new import cycle(s):\n{describe(found - ALLOWED_WITH_DEFERRED)}"
    assert found == ALLOWED_WITH_DEFERRED, (
        f"cycle(s) changed: set ALLOWED_WITH_DEFERRED to\n{describe(found)}")


def test_import_cycles_with_type_checking_imports_are_the_recorded_ones():
    found = cycles(graphs()[2])
    print(f"import cycles, TYPE_CHECKING imports included:\n{describe(found)}")
    assert found - ALLOWED_WITH_TYPE_CHECKING == set(), (
        f"new import cycle(s):\n{describe(found - ALLOWED_WITH_TYPE_CHECKING)}")
    assert found == ALLOWED_WITH_TYPE_CHECKING, f"cycle(s) changed: set ALLOWED_WITH_TYPE_CHECKING to\n{describe(found)}"


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


# The layers of shared/DESIGN.md: server -> connection classes (http1/, http2/, websocket/) -> asgi/.
# Each layer may import the ones below it and the shared leaf modules, never one above or beside.
# (fastserve.compiled: which build runs, and mypyc_attr; it imports the hot-path modules only by name)
LEAVES = {"fastserve.config", "fastserve.logging", "fastserve.batching", "fastserve.proxy", "fastserve.tls",
          "fastserve.compiled"}
MAY_IMPORT = {
    "fastserve.asgi": {"fastserve.asgi"},
    "fastserve.http1": {"fastserve.http1", "fastserve.asgi", "fastserve.state"} | LEAVES,
    "fastserve.http2": {"fastserve.http2", "fastserve.http1", "fastserve.asgi", "fastserve.websocket",
                        "fastserve.state"} | LEAVES,
    "fastserve.websocket": {"fastserve.websocket", "fastserve.asgi", "fastserve.http1.render", "fastserve.state"}
                           | LEAVES,
}


def _layer_allows(allowed: set[str], target: str) -> bool:
    return any(target == prefix or target.startswith(prefix + ".") for prefix in allowed)


def test_layers_import_only_downwards():
    typing_graph = graphs()[2]  # every import, deferred and TYPE_CHECKING ones included
    wrong = []
    for module, targets in sorted(typing_graph.items()):
        layer = next((prefix for prefix in MAY_IMPORT if _layer_allows({prefix}, module)), None)
        if layer is None:
            continue
        wrong += [f"{module} -> {t}" for t in sorted(targets) if not _layer_allows(MAY_IMPORT[layer], t)]
    assert wrong == [], "imports against the layering:\n  " + "\n  ".join(wrong)


def test_the_websocket_side_knows_no_wire_format_but_its_http1_carrier():
    """The session, the handshake and the carrier contract serve an HTTP/2 stream too (RFC 8441):
    only the HTTP/1.1 carrier (websocket/upgraded.py) renders HTTP/1.1."""
    typing_graph = graphs()[2]
    wrong = [f"{module} -> {target}" for module, targets in sorted(typing_graph.items())
             if module.startswith("fastserve.websocket") and module != "fastserve.websocket.upgraded"
             for target in sorted(targets) if target.startswith(("fastserve.http1", "fastserve.http2"))]
    assert wrong == [], "\n  ".join(wrong)
    assert "fastserve.http1.render" in typing_graph["fastserve.websocket.upgraded"]  # the graph is read
