"""Errors of a run that the user causes and can fix: entry points report them as one line.

All derive from `data_pipeline.errors.UserError` (as does the pipeline's
`DatasetNotPreparedError`), so `stica_jax.cli.run` prints any of them as one line on stderr and
exits with status 2, without a traceback.
"""

from data_pipeline.errors import UserError


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message says what to change."""


class NonFiniteError(UserError, FloatingPointError):
    """A step made the loss, the gradients or the new state NaN/inf; nothing non-finite was saved."""


class CheckpointError(UserError, OSError):
    """A workdir's checkpoints cannot be restored, or a checkpoint cannot be written."""


class WorkdirError(UserError):
    """The workdir is in use by another run, or holds a run of another configuration."""


__all__ = ["CheckpointError", "ConfigError", "NonFiniteError", "UserError", "WorkdirError"]
