"""Errors of a run that the user causes and can fix: entry points report them as one line.

Both derive from `data_pipeline.errors.UserError` (as does the pipeline's
`DatasetNotPreparedError`), so `stica_jax.cli.run` prints any of them as one line on stderr and
exits with status 2, without a traceback.
"""

from data_pipeline.errors import UserError


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message says what to change."""


class NonFiniteError(UserError, FloatingPointError):
    """Loss or gradients became NaN/inf; nothing was checkpointed after the last good step."""


__all__ = ["ConfigError", "NonFiniteError", "UserError"]
