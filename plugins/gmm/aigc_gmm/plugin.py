"""Hooks of the ``gmm`` plugin: the engine models ``gmm`` and ``bgmm`` and the ``gmm-select`` command.

Each hook imports what it registers, so that ``aigc-engine --help`` (which only asks for
commands) loads neither torch nor scikit-learn.
"""
from __future__ import annotations

from aigc_engine import hookimpl


@hookimpl
def aigc_engine_register_models(register):
    from .model import BGMMModel, GMMModel

    register(GMMModel)
    register(BGMMModel)


@hookimpl
def aigc_engine_register_commands(cli):
    from .select import gmm_select

    cli.add_command(gmm_select)
