"""User-facing errors.

Every error a user can fix (missing data, bad image, wrong config, wrong checkpoint) is raised as
:class:`UGPNetError` with a message naming the file and the fix. The CLI prints the message and
exits with status 2 instead of a traceback.
"""


class UGPNetError(Exception):
    """An error the user can act on; the message says what is wrong and how to fix it."""


class ConfigError(UGPNetError):
    """params.yaml or a command-line override is invalid."""


class DataError(UGPNetError):
    """An input image, folder or dataset is missing or unusable."""


class CheckpointError(UGPNetError):
    """A checkpoint or pretrained weight file is missing or does not fit the model."""


class RunLockedError(UGPNetError):
    """Another process is training in the same run folder."""


class TrainingDiverged(UGPNetError):
    """A training loss became NaN or infinite; the last good checkpoint is kept."""


class UndeclaredConfigRead(UGPNetError):
    """A method kind's ``train_stage`` read a configuration key its ``stage_config`` (the stage's
    identity) does not cover: a change of that key would not rerun the stage. Not a KeyError, so
    ``.get(key, default)`` cannot hide it."""
