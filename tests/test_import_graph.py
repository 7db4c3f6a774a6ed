"""The module import graph of `stica_jax` and `data_pipeline` has no cycle.

The graph is read from the source with `ast`, so nothing is imported: every `import` statement
counts, at module level or inside a function (a late import hides a cycle from the interpreter,
not from a reader), absolute or relative. `from x import y` is an edge to the module `x.y` when
that is a module of the tree, else to `x`. Importing `a.b.c` also runs the packages `a` and
`a.b`: edges too, except to the importer's own packages (already initialised when it runs).
The one exception: the body of a module-level `if __name__ == "__main__":`, which runs when the
file is the program and never when it is imported. A command's former spelling lives there
(`python -m stica_jax.evaluate.heatmap` runs the command module `stica_jax.heatmap`).
"""

import ast
import pathlib
from collections.abc import Iterable

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("stica_jax", "data_pipeline")


def module_files(root: pathlib.Path, packages: tuple[str, ...]) -> dict[str, pathlib.Path]:
    """Dotted module name → source file, for every `.py` file under the given packages."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def importing_statements(tree: ast.Module) -> list[ast.stmt]:
    """The module-level statements that importing the module runs: all but the body of an
    `if __name__ == "__main__":` (its `else:` runs)."""
    statements = []
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        is_main_guard = (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and [type(op) for op in test.ops] == [ast.Eq]
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__"
        )
        statements += node.orelse if is_main_guard else [node]
    return statements


def imported_modules(module: str, path: pathlib.Path, modules: Iterable[str]) -> set[str]:
    """The modules of `modules` that importing `module` (source at `path`) may run."""
    modules = set(modules)
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    imported = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in (n for top in importing_statements(tree) for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = ".".join(
                    package[: len(package) - node.level + 1] + (node.module or "").split(".")
                ).rstrip(".")
            else:
                base = node.module
            for alias in node.names:  # the submodule `base.name` if there is one, else `base`
                submodule = f"{base}.{alias.name}"
                imported.add(submodule if submodule in modules else base)
    targets = set(imported)
    for name in imported:
        # Importing a.b.c runs a and a.b first: edges too, except for the importer's own
        # packages, which are already initialised (or initialising) when it runs.
        parts = name.split(".")
        for n in range(1, len(parts)):
            if n > len(package) or parts[:n] != package[:n]:
                targets.add(".".join(parts[:n]))
    return {t for t in targets if t in modules and t != module}


def import_graph(root: pathlib.Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module → the modules of the tree it imports (see the module docstring)."""
    modules = module_files(root, packages)
    return {m: imported_modules(m, path, modules) for m, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (`[a, b, ..., a]`) through each strongly connected component of > 1 module.

    Tarjan's algorithm for the components, then a breadth-first search inside each one for a
    shortest cycle through its first module, so the message names a real import chain.
    """
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for component in components:
        start, members = component[0], set(component)
        parent, frontier = {start: None}, [start]
        while frontier and start not in {w for v in frontier for w in graph[v]}:
            following = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w not in parent:
                        parent[w] = v
                        following.append(w)
            frontier = following
        last = next(v for v in frontier if start in graph[v])
        path = [last]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        cycles.append([*reversed(path), start])
    return cycles


def test_no_import_cycle():
    cycles = find_cycles(import_graph(REPO, PACKAGES))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_graph_sees_the_imports_it_must_see():
    """Guards the parser: known edges of the tree, late (function-level) imports included."""
    graph = import_graph(REPO, PACKAGES)
    assert "stica_jax.checkpointing" in graph["stica_jax.train"]  # from stica_jax import m
    assert {"stica_jax.models", "stica_jax.checkpointing"} <= graph["stica_jax.restore"]
    assert "stica_jax.restore" in graph["stica_jax.export.to_torch"]
    assert "data_pipeline.pipeline" in graph["stica_jax.evaluate.probe"]  # inside a function
    assert "stica_jax.models" in graph["stica_jax.train"]  # a name from a package __init__


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module that importing `start` may run → the module that imports it (a path back)."""
    parent, frontier = {start: ""}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    return parent


def import_chain(parent: dict[str, str], target: str) -> str:
    chain = [target]
    while parent[chain[-1]]:
        chain.append(parent[chain[-1]])
    return " -> ".join(reversed(chain))


def test_evaluation_and_export_do_not_reach_the_trainer():
    """Evaluation and export stand below the trainer: restoring a model builds no optimizer
    (`restore.restore_model`), so nothing they import, directly or through other modules,
    imports `stica_jax.train` (its optimizer, schedule, `clu` writers and TensorFlow)."""
    graph = import_graph(REPO, PACKAGES)
    chains = []
    for module in sorted(graph):
        if module.startswith(("stica_jax.evaluate", "stica_jax.export")):
            parent = reachable(graph, module)
            if "stica_jax.train" in parent:
                chains.append(import_chain(parent, "stica_jax.train"))
    assert not chains, "evaluate/export reach the trainer:\n" + "\n".join(chains)


def test_the_reach_check_sees_an_indirect_import(tmp_path):
    """A made-up tree where `pkg.evaluate.x` reaches `pkg.train` through a late import."""
    package = tmp_path / "pkg"
    (package / "evaluate").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "evaluate" / "__init__.py").write_text("")
    (package / "evaluate" / "x.py").write_text("from pkg import restore\n")
    (package / "restore.py").write_text("def f():\n    from pkg import train\n")
    (package / "train.py").write_text("")
    graph = import_graph(tmp_path, ("pkg",))
    parent = reachable(graph, "pkg.evaluate.x")
    assert import_chain(parent, "pkg.train") == "pkg.evaluate.x -> pkg.restore -> pkg.train"


def test_data_pipeline_does_not_import_stica_jax():
    """The input pipeline stands below the model code: it must run without it."""
    graph = import_graph(REPO, PACKAGES)
    offenders = {
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if module.split(".")[0] == "data_pipeline" and target.split(".")[0] == "stica_jax"
    }
    assert not offenders, "data_pipeline imports stica_jax: " + ", ".join(sorted(offenders))


def test_finds_a_cycle_through_a_late_relative_import(tmp_path):
    """A made-up package whose cycle closes through an import inside a function."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .c import C\n")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("import pkg.sub.c\n")
    (package / "sub" / "c.py").write_text("def f():\n    from .. import a\n")
    (package / "d.py").write_text("from pkg.sub import C\nfrom . import a\n")
    (package / "e.py").write_text("import pkg.sub.c as c\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.sub", "pkg.a"}
    assert graph["pkg.e"] == {"pkg.sub", "pkg.sub.c"}  # pkg.sub's __init__ runs first
    assert graph["pkg.sub"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_a_main_guard_is_no_import_edge(tmp_path):
    """`python -m pkg.lib` running the command `pkg.command`, which imports `pkg.lib`: the
    guard's import runs only when `pkg/lib.py` is the program, so no cycle, no edge."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "command.py").write_text("from pkg import lib\n")
    (package / "lib.py").write_text(
        'import os\n\nif __name__ == "__main__":\n    from pkg import command\n'
        "else:\n    from pkg import other\n"
    )
    (package / "other.py").write_text("")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.lib"] == {"pkg.other"}
    assert graph["pkg.command"] == {"pkg.lib"}
    assert find_cycles(graph) == []
