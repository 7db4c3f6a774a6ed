"""`python -m stica_jax.report EVAL_DIR...`: the results of evaluation runs as one markdown
table, beside the paper's numbers (spec §11; `stica_jax.evaluate.report`).

Each EVAL_DIR is the `--workdir` of a `python -m stica_jax.evaluate` run and holds its
`results.json`. A dir without a readable one is a one-line error with exit status 2
(`stica_jax.cli`).
"""

from absl import app

from stica_jax import cli
from stica_jax.evaluate.report import format_table
from stica_jax.evaluate.results import read_results


def main(argv: list[str]) -> None:
    eval_dirs = list(argv[1:])
    if not eval_dirs:
        raise app.UsageError(
            "give one or more evaluation dirs: EVAL_DIR... (each holds results.json)"
        )
    print(format_table([read_results(d) for d in eval_dirs]))


if __name__ == "__main__":
    cli.run(main)
