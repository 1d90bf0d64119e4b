"""The hooks a plugin may implement. Each docstring is that hook's documentation."""
from __future__ import annotations

import pluggy

PROJECT = "aigc_engine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# The version of the plugin API (these hooks, ``Model``, ``Run``, ``Dataset``): a plugin declares
# the versions it works with as ``AIGC_ENGINE_API = ">=1.0"`` (a PEP 440 specifier) in its
# entry-point module, and is skipped, status "incompatible", when this one does not match.
API_VERSION = "1.0"


@hookspec
def aigc_engine_register_models(register):
    """Register model classes: call ``register(ModelClass)`` once per model.

    A model class has ``name`` (its registry key), ``Config`` (a dataclass whose fields all have
    defaults), ``fit(dataset, run)``, ``sample(n, condition=None)``, ``state_dict()`` and
    ``load_state_dict(state)``; see :class:`aigc_engine.Model`.
    """


@hookspec
def aigc_engine_register_datasets(register):
    """Register datasets: call ``register(name, factory, description="")``.

    ``factory(**options)`` returns an :class:`aigc_engine.data.Dataset`; its keyword arguments
    (with defaults) are the options users set with ``--set dataset.KEY=VALUE``.
    """


@hookspec
def aigc_engine_register_readers(register):
    """Register file readers: call ``register(suffix, reader, description="", override=False)``.

    ``suffix`` is how a file name ends, lower case (``".parquet"``, ``".tar.gz"``; matched in
    any case, the longest registered suffix first), or ``"folder"`` for directories.
    ``reader(path, **options)`` returns an :class:`aigc_engine.data.Dataset` for that
    ``pathlib.Path``; its keyword arguments (all with defaults, annotated for typing) are the
    options users set with ``--set dataset.KEY=VALUE``. A suffix another plugin registered is a
    clash, reported against the later plugin (the first keeps it); ``override=True`` replaces
    the core's own reader of that suffix (``.npy``, ``.npz``, ``.csv``, ``folder``) instead.
    """


@hookspec
def aigc_engine_register_commands(cli):
    """Add click commands to the ``aigc-engine`` group: ``cli.add_command(command)``."""
