"""`benchmarks` is a package run as `python -m benchmarks.<name>` from the repository root: its
modules import one another without a circle and none edits `sys.path` to find the checkout."""

import ast

from tests.test_import_graph import REPO, find_cycles, import_graph


def test_benchmarks_import_one_another_without_a_circle():
    graph = import_graph(REPO, ("benchmarks",))
    assert "benchmarks.measured_step" in graph["benchmarks.hlo_stats"]  # inside main()
    assert "benchmarks.measured_step" in graph["benchmarks.train_step"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_benchmark_edits_sys_path():
    edits = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in sorted((REPO / "benchmarks").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path"
    ]
    assert not edits, f"sys.path edited at {edits}"
