"""Errors the engine reports to users as one line (CLI exit status 2)."""


class InputError(ValueError):
    """Bad input or impossible settings: shown as ``Error: <message>``, exit status 2."""


class PluginError(RuntimeError):
    """A plugin failed to load or its hook raised (raised only with AIGC_ENGINE_STRICT_PLUGINS=1)."""
