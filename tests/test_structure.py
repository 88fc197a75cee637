"""The package structure ARCHITECTURE.md describes, checked on the source: imports go one way
(apps/cli -> zoo/augment -> engine -> utils), no two tlkit modules import each other (even
through a chain or from inside a function), and no file grows past 400 lines.

Imports are read with ``ast`` from every tlkit file, at module level and inside functions alike:
a function-level import hides a dependency from a reader but not from Python."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tlkit"
MAX_LINES = 400

# Exceptions to the rules below, each with its reason. Empty: every rule holds.
TOO_LONG_FOR_NOW = set()
UPWARD_FOR_NOW = set()
CYCLES_FOR_NOW = []


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name):
    return MODULES.get(name, pathlib.Path()).name == "__init__.py"


def imported_modules(name, path):
    """The tlkit modules ``name`` makes Python run: each one it names, and the packages above
    those (their ``__init__``), except its own ancestors and the root package, which Python has
    started before this module runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if is_package(name) else name.rpartition(".")[0]
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                named.add(sub if sub in MODULES else module)
    named = {m for m in named if m == "tlkit" or m.startswith("tlkit.")}
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    result = set(named)
    for m in named:
        parts = m.split(".")
        result.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return {m for m in result if m in MODULES and m != name and m not in ancestors - named}


def under(module, *packages):
    return any(module == p or module.startswith(p + ".") for p in packages)


GRAPH = {name: {dep for dep in imported_modules(name, path)
                if not any(name == m and under(dep, p) for m, p in UPWARD_FOR_NOW)}
         for name, path in MODULES.items()}


def test_version_module_imports_nothing():
    assert GRAPH["tlkit.version"] == set()


def test_the_graph_sees_function_level_and_package_imports():
    # Guards against a parser that silently finds nothing: known edges of each kind.
    assert "tlkit.engine.model" in GRAPH["tlkit.engine.sequential"]  # module level
    assert "tlkit.augment.generator" in GRAPH["tlkit.augment.cli"]  # inside a function
    assert "tlkit.engine.layers" in GRAPH["tlkit.engine.saving.config"]  # a package's __init__


LAYERS = [
    # (packages, the tlkit packages they may import); tlkit.version imports nothing: anyone may read it
    (("tlkit.utils",), ("tlkit.utils", "tlkit.version")),
    (("tlkit.engine",), ("tlkit.engine", "tlkit.utils", "tlkit.version")),
    (("tlkit.augment",), ("tlkit.augment", "tlkit.engine", "tlkit.utils", "tlkit.version")),
    (("tlkit.zoo",), ("tlkit.zoo", "tlkit.augment", "tlkit.engine", "tlkit.utils", "tlkit.version")),
    # tlkit.distributed (optional, needs dask) sits on top of the apps: only the CLI reaches it.
    (("tlkit.apps",), ("tlkit.apps", "tlkit.zoo", "tlkit.augment", "tlkit.engine", "tlkit.utils", "tlkit.version",
                       "tlkit.distributed")),
]


@pytest.mark.parametrize("packages, allowed", LAYERS, ids=[p[0][0] for p in LAYERS])
def test_imports_go_one_way(packages, allowed):
    upward = sorted((m, dep) for m, deps in GRAPH.items() if under(m, *packages) for dep in deps
                    if not under(dep, *allowed))
    assert not upward, f"{packages[0]} may import only {allowed}; these import upward: {upward}"


def test_no_import_cycles():
    # Tarjan's strongly connected components: any component of 2+ modules is a cycle.
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 and set(component) not in CYCLES_FOR_NOW:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other (directly or through a chain): {cycles}"


def test_no_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(long) <= TOO_LONG_FOR_NOW, f"files over {MAX_LINES} lines: {long}; split them by concern"
