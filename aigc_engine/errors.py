"""Errors the engine reports to users as one line (CLI exit status 2)."""


class InputError(ValueError):
    """Bad input or impossible settings: shown as ``Error: <message>``, exit status 2."""


class EnvironmentFault(OSError):
    """The machine refused a write (a full disk, a read-only file system, no permission): not bad
    input, not a bug. Shown as ``Error: <message>`` (what to free, or where to write instead), exit
    status 3; what was there before the write is intact."""

    exit_code = 3

    def __str__(self) -> str:
        return str(self.strerror)


class PluginError(RuntimeError):
    """A plugin failed to load or its hook raised (raised only with AIGC_ENGINE_STRICT_PLUGINS=1)."""


class Interrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after writing its checkpoint (raised by the training
    loop, :class:`aigc_engine.loop.TrainLoop`); ``exit_code`` is 130 or 143."""

    def __init__(self, signum: int, step: int):
        import signal

        self.signum, self.step = signum, step
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}")
