"""Every command is `python -m stica_jax.<command>`: a module that holds the command alone (its
flags and a `main(argv)` run through `stica_jax.cli.run`), while library modules define no
`main` and no flag. The former spellings still run the commands, and `python -m
stica_jax.models` runs as a newcomer runs it."""

import ast
import os
import pathlib

import pytest

from tests.command_line import ROOT, newcomer_dirs, run_fresh, stderr_lines

REPO = pathlib.Path(ROOT)
PACKAGES = ("stica_jax", "data_pipeline")

# What a user types after `python -m` → the module that holds the command.
COMMANDS = {
    "stica_jax.main": "stica_jax/main.py",
    "stica_jax.evaluate": "stica_jax/evaluate/__main__.py",
    "stica_jax.report": "stica_jax/report.py",
    "stica_jax.heatmap": "stica_jax/heatmap.py",
    "stica_jax.export": "stica_jax/export/__main__.py",
    "stica_jax.models": "stica_jax/models/__main__.py",
    "stica_jax.ablate": "stica_jax/ablate.py",
    "stica_jax.prepare": "stica_jax/prepare.py",
    "stica_jax.compile_check": "stica_jax/compile_check.py",
}
# A former spelling → the command it runs, from its library module's `__main__` guard.
FORMER = {
    "stica_jax.evaluate.report": "stica_jax.report",
    "stica_jax.evaluate.heatmap": "stica_jax.heatmap",
    "stica_jax.export.torch": "stica_jax.export",
    "data_pipeline.prepare": "stica_jax.prepare",
}


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts).removesuffix(".__init__")] = path
    return modules


def _main_guard(tree: ast.Module) -> ast.If | None:
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
        ):
            return node
    return None


def _is_cli_run_of_main(statement: ast.stmt) -> bool:
    """`cli.run(main)` or `cli.run(<module>.main)`."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "cli.run"):
        return False
    (argument,) = call.args
    return ast.unparse(argument) == "main" or ast.unparse(argument).endswith(".main")


def _defines_flags(tree: ast.Module) -> list[str]:
    return [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and (node.func.attr.startswith("DEFINE_") or node.func.attr.startswith("mark_flag"))
    ]


def test_every_command_module_runs_its_main_through_cli_run():
    for command, path in COMMANDS.items():
        tree = ast.parse((REPO / path).read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), path
        guard = _main_guard(tree)
        assert guard is not None and tree.body[-1] is guard, f"{path}: no closing __main__ guard"
        assert [ast.unparse(s) for s in guard.body] == ["cli.run(main)"], path


def test_library_modules_hold_no_main_and_no_flags():
    commands = {str(REPO / path) for path in COMMANDS.values()}
    offenders = []
    for module, path in _modules().items():
        if str(path) in commands:
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            offenders.append(f"{module}: defines main")
        offenders += [f"{module}: {call}" for call in _defines_flags(tree)]
        guard = _main_guard(tree)
        if guard is None:
            continue
        # Only a former spelling may run as a program, and only to run its command.
        imported = {
            f"{node.module}.{alias.name}".removesuffix(".__main__")
            for node in ast.walk(guard)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        if module not in FORMER or FORMER[module] not in imported:
            offenders.append(f"{module}: a __main__ guard that runs no command")
        elif not _is_cli_run_of_main(guard.body[-1]):
            offenders.append(f"{module}: its __main__ guard does not end with cli.run(….main)")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    "former, args, message",
    [
        ("stica_jax.evaluate.report", [], "give one or more evaluation dirs"),
        ("stica_jax.evaluate.heatmap", ["--out=out"], "give at least one --video=FILE.mp4"),
        ("stica_jax.export.torch", ["--out=out"], "give exactly one of --workdir or --config"),
        ("data_pipeline.prepare", ["ucf101"], "ucf101 needs --manual_dir"),
    ],
)
def test_a_former_spelling_runs_its_command(former, args, message, tmp_path):
    """`python -m <former spelling>` is the command under the name the user typed."""
    home, cwd = newcomer_dirs(tmp_path)
    result = run_fresh(["-m", former, *args], home=str(home), cwd=str(cwd), timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = stderr_lines(result)
    assert line.startswith(f"{former}: error: {message}"), line
    assert os.listdir(cwd) == []


def test_the_model_summary_runs_as_a_newcomer_runs_it(tmp_path):
    home, cwd = newcomer_dirs(tmp_path)
    demo = REPO / "configs" / "demo.py"
    result = run_fresh(["-m", "stica_jax.models", f"--config={demo}"], home=home, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("STiCA model summary (abstract trace, nothing computed)")
    assert "multiply-adds per clip:" in result.stdout
    missing = run_fresh(["-m", "stica_jax.models", "--config=nope.py"], home=home, cwd=cwd)
    assert missing.returncode == 2
    assert stderr_lines(missing) == [
        "stica_jax.models: error: --config=nope.py: no such config file"
    ]
    assert os.listdir(cwd) == []


def test_prepare_names_the_datasets_of_the_builders():
    """`python -m stica_jax.prepare` checks NAME against `data_pipeline.prepare.DATASETS` (no
    TensorFlow before a usage error); it must be the builders' list."""
    from data_pipeline import prepare
    from data_pipeline.builders import BUILDERS

    assert prepare.DATASETS == tuple(BUILDERS)
