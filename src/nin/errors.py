"""nin's own errors. Each is something the user can fix (bad data, a bad checkpoint, bad flags,
a run that stopped for a reason): the CLI prints its one-line message, which names the file and
the fix, and exits with its code. Any other exception is a bug and keeps its traceback.

ConfigError and ImageError are also ValueErrors, so callers that catch ValueError keep working.
"""


class NinError(Exception):
    """Base class of every error the CLI reports in one line."""
    exit_code = 2


class ConfigError(NinError, ValueError):
    """Settings that cannot work together (flags, a resumed run's config, an output folder)."""


class DataError(NinError):
    """Missing, corrupt or unsafe data. The message names the file and what to do."""


class CheckpointError(NinError):
    """A missing, damaged or mismatched checkpoint; the message names the file."""


class OutputError(NinError, OSError):
    """A file that could not be written (a read-only place, no such folder, a full disk); the
    message names it. Whatever was there before is left as it was."""


class ImageError(NinError, ValueError):
    """A user's image that cannot be read."""


class TrainingStopped(NinError):
    """Training stopped on purpose; the last good checkpoint is kept."""
    exit_code = 3


class DeadStartError(TrainingStopped):
    """A class map of the last layer died (zero for every image, so it gets no gradient); with
    all of them dead the loss sits at ln(classes)."""


class NonFiniteLoss(TrainingStopped):
    """The training loss became NaN or infinite."""


class Preempted(TrainingStopped):
    """SIGTERM (SLURM, a preemptible cloud): a checkpoint was written; run again with --resume.
    Exit code 75 (EX_TEMPFAIL, "try again"), which job scripts can test to requeue."""
    exit_code = 75


class Interrupted(Preempted):
    """Ctrl-C: a checkpoint was written; run again with --resume. Exit code 130, the shell's
    for an interrupt."""
    exit_code = 130
