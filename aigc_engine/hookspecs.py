"""The hooks a plugin may implement. Each docstring is that hook's documentation."""
from __future__ import annotations

import pluggy

PROJECT = "aigc_engine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
def aigc_engine_register_commands(cli):
    """Add click commands to the ``aigc-engine`` group: ``cli.add_command(command)``."""
