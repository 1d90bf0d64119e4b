"""The model contract: everything the engine, ``compare`` and the CLI use of a model plugin.

Reading this class tells a plugin author the whole contract. Four methods are required
(``fit``, ``sample``, ``state_dict``, ``load_state_dict``); every other part has a working
default here, and the engine calls these methods and attributes directly instead of probing
for them. A registered class that does not subclass :class:`Model` gets the defaults mixed in
(:func:`as_model_class`), so older plugins keep working unchanged.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from .config import check_config
from .errors import InputError
from .sampling import check_samples  # noqa: F401 - its home before sampling.py; plugins import it from here

if TYPE_CHECKING:  # pragma: no cover - annotations only: listing models needs no torch
    from pathlib import Path

    import torch

    from .conditions import Encoded
    from .data import Dataset
    from .run import Run

#: What ``Model.log_prob`` returns, per row:
#: ``"exact"``        log p(x), a density of continuous values (nats);
#: ``"bound"``        a lower bound of that density's log (an ELBO or an IWAE estimate);
#: ``"discrete"``     log P(x), the probability of the pixel levels of discrete images;
#: ``"discrete_bound"`` a lower bound of that log-probability;
#: ``None``           the model has no ``log_prob``.
#: A density model evaluated on discrete images is scored on uniformly dequantised rows (a lower
#: bound of the discrete log-probability, Theis et al. 2016): ``compare`` does that itself.
LogProbKind = Literal["exact", "bound", "discrete", "discrete_bound"]
LOG_PROB_KINDS: tuple[str, ...] = ("exact", "bound", "discrete", "discrete_bound")


class Model(abc.ABC):
    """Base class of engine models.

    Class attributes: ``name`` (the registry key, ``aigc-engine run NAME``), ``Config`` (a
    dataclass whose fields all have defaults: the hyper-parameters, set with ``--set KEY=VALUE``;
    declare help and ranges with :func:`aigc_engine.config.option`), ``default_dataset`` (the
    dataset ``run`` uses without ``--dataset``; None: ``--dataset`` is required),
    ``defaults_by_kind`` (the values of fields left at None, per kind of data) and
    ``takes_weights`` (whether ``fit`` uses ``dataset.weights``).

    The engine's life cycle of a run: ``Model(config)`` (bad config values raise
    :class:`~aigc_engine.InputError`), ``validate(data)`` (before any run directory exists),
    ``fit(data, run)``, ``evaluate(data, run)`` (into ``summary.json``), ``state_dict()`` (into
    ``model.safetensors``), then the pictures (``samples.png`` through ``sample``, ``num_classes``
    and ``annotate_plot``; more through ``figures``). ``sample``/``eval`` later rebuild the model
    as ``Model(config)`` + ``load_state_dict``.

    Two rules the core keeps itself, before a plugin's code runs, on every subclass (and on the
    class :func:`as_model_class` builds for a duck-typed model): ``validate`` refuses a dataset
    without rows, and ``sample`` refuses a condition while ``num_classes`` is 0 (both an
    :class:`~aigc_engine.InputError`).
    """

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        _core_rules(cls)

    name: ClassVar[str]
    Config: ClassVar[type]
    default_dataset: ClassVar[str | None] = None
    #: Values of the Config fields left at None, per kind of data (:func:`~aigc_engine.config.data_kind`):
    #: ``{"points": {"steps": 24000}, "images": {"steps": 1500}}``. The model resolves them in ``fit``
    #: with :func:`~aigc_engine.config.resolve_defaults`; ``aigc-engine models`` lists them.
    defaults_by_kind: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Whether ``fit`` uses ``dataset.weights`` (row weights from ``dataset.weight_column`` or an
    #: ``.npz`` key ``w``): the engine refuses weighted data for a model that would ignore them.
    takes_weights: ClassVar[bool] = False
    #: Whether ``fit`` honours a privacy budget: under ``--set privacy.epsilon=E`` the engine hands
    #: the fit its share as ``run.privacy`` (a :class:`~aigc_engine.privacy.PrivacyBudget`, delta
    #: resolved; None when the run is not private), and the fit spends at most that, reporting what
    #: it spent as ``privacy_epsilon`` / ``privacy_delta`` / ``privacy_accountant`` (and any other
    #: ``privacy_*`` figure) among :meth:`evaluate`'s metrics (unreported: its whole share counts).
    #: The engine refuses a budget for a model without it (docs/privacy.md).
    supports_privacy: ClassVar[bool] = False

    def __init__(self, config: Any = None):
        """``config``: an instance of ``Config`` (None: its defaults); values outside what the
        fields' :func:`~aigc_engine.config.option` allow raise InputError here."""
        self.config = config if config is not None else self.Config()
        if dataclasses.is_dataclass(self.config):
            check_config(self.config, self.name)

    # -- required ------------------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, dataset: "Dataset", run: "Run") -> None:
        """Train on ``dataset`` (all of it: the engine holds nothing back), logging through
        ``run`` (``run.log``, ``run.progress``, ``run.loop`` for step loops, checkpoints)."""

    @abc.abstractmethod
    def sample(self, n: int, condition: "torch.Tensor | None" = None) -> "torch.Tensor":
        """``n`` samples, a float tensor ``[n, *row shape]`` on the CPU, in the data's scale
        (images in [-1, 1]). ``condition``: int64 class labels, one or ``[n]``, for a model with
        ``num_classes > 0`` (without it, labels drawn from the training frequencies:
        :func:`sample_labels`). A condition given to a model whose ``num_classes`` is 0 is refused
        by the core (an InputError) before this runs."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """What restores the fitted model: a tree of dicts/lists of tensors and JSON values
        (stored as safetensors + JSON, never pickled)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from what ``state_dict`` returned (a state that is not this model's raises
        InputError)."""

    # -- optional, with the defaults the engine uses -------------------------------------------
    def validate(self, dataset: "Dataset") -> None:
        """Raise :class:`~aigc_engine.InputError` for data this model cannot take (its shape,
        labels, size against the config). Called before the run directory is made, so a
        rejected run leaves nothing behind. A dataset without rows is refused by the core before
        this runs. Default: accept everything else."""

    def validate_privacy(self, dataset: "Dataset", budget: Any) -> None:
        """Raise :class:`~aigc_engine.InputError` for what the private fit under ``budget`` (the
        fit's share, a PrivacyBudget) cannot do with this config and data, before any run
        directory exists (called only for a private run of a model that ``supports_privacy``)."""

    def evaluate(self, dataset: "Dataset", run: "Run") -> dict[str, float]:
        """Metrics of the fitted model, written to ``summary.json``. ``dataset`` is what ``fit``
        got: the whole data of ``run``, or the training part under ``aigc-engine compare`` (which
        measures held-out rows itself). Default: none."""
        return {}

    #: Classes the fitted model samples conditioned on (``sample(n, condition=labels)``); 0 for an
    #: unconditional model. A plain attribute: a model sets it in ``fit`` and ``load_state_dict``.
    num_classes: int = 0

    def log_prob(self, x: "torch.Tensor") -> "torch.Tensor":
        """One value per row of ``x`` (``[N, *row shape]``), of the kind ``log_prob_kind``
        declares, in nats. Default: none (``log_prob_kind`` is None)."""
        raise NotImplementedError(f"model {self.name!r} has no log_prob")

    @property
    def log_prob_kind(self) -> LogProbKind | None:
        """What ``log_prob`` returns (see :data:`LogProbKind`); None when there is none.
        Override it with a class attribute, or a property when it depends on the fitted data.
        Default: ``"exact"`` when the class defines ``log_prob``, else None. (Older plugins'
        ``log_prob_is_bound`` and ``levels`` attributes are read as the same declaration.)"""
        if type(self).log_prob is Model.log_prob:
            return None
        kind = "bound" if getattr(self, "log_prob_is_bound", False) else "exact"
        return f"discrete_{kind}" if getattr(self, "levels", 0) else kind

    def sample_conditioned(self, n: int, where: "Encoded", class_weights: "torch.Tensor | None" = None
                           ) -> "tuple[torch.Tensor, torch.Tensor | None] | None":
        """``(samples, labels)``: ``n`` samples (as :meth:`sample`: encoded table rows) drawn
        under ``where``, conditions on a table's columns in the encoded matrix (allowed one-hot
        slots, value intervals: :class:`aigc_engine.conditions.Encoded`), and for a conditional
        model the class of each (None otherwise), chosen among the classes ``class_weights``
        allows (their training rates) as the conditions make them likely. A model that
        conditions exactly returns rows that meet them (the engine still checks every decoded
        row, and draws again for the few that miss); ``where.rest`` it need not handle.
        Default: None, the model conditions on nothing: the engine draws with :meth:`sample`
        and rejects the rows that miss, within a budget."""
        return None

    def annotate_plot(self, ax: Any) -> None:
        """Draw on the matplotlib axes of the 2-D scatter in ``samples.png`` (e.g. the fitted
        components' ellipses). Default: nothing."""

    def figures(self, dataset: "Dataset") -> dict[str, Callable[["Path"], None]]:
        """More pictures for the run directory: file name -> ``draw(path)``, called by the engine
        after ``samples.png`` (e.g. ``progress.png``). Default: none."""
        return {}


def _refuse_empty(validate: Callable) -> Callable:
    @functools.wraps(validate)
    def checked(self, dataset, *args, **kwargs):
        if len(dataset) == 0:
            raise InputError(f"dataset {getattr(dataset, 'name', '')!r} has no rows: model {self.name!r} "
                             "cannot fit it")
        return validate(self, dataset, *args, **kwargs)
    return checked


def _refuse_condition_unless_conditional(sample: Callable) -> Callable:
    @functools.wraps(sample)
    def checked(self, *args, **kwargs):
        condition = kwargs["condition"] if "condition" in kwargs else args[1] if len(args) > 1 else None
        if condition is not None and not self.num_classes:
            raise InputError(f"this {self.name} is unconditional (num_classes is 0): it cannot sample with a "
                             "condition")
        return sample(self, *args, **kwargs)
    return checked


_CORE_RULES: dict[str, Callable[[Callable], Callable]] = {
    "validate": _refuse_empty, "sample": _refuse_condition_unless_conditional}


def _core_rules(cls: type) -> None:
    """Wrap the ``validate`` and ``sample`` that ``cls`` ends up with in the core's checks, so every
    model keeps them wherever it is called from (the engine, ``compare``, a script) and no plugin
    has to write them; a method wrapped once, inherited, is not wrapped again."""
    for attr, rule in _CORE_RULES.items():
        method = getattr(cls, attr)
        if getattr(method, "__isabstractmethod__", False) or getattr(method, "_core_rule", None) is rule:
            continue
        checked = rule(method)
        checked._core_rule = rule
        setattr(cls, attr, checked)


def as_model_class(cls: type) -> type:
    """``cls`` itself when it subclasses :class:`Model`; otherwise a subclass of it with
    ``Model``'s defaults mixed in (its own methods and attributes win), so the engine can call
    every part of the contract on any registered model."""
    if isinstance(cls, type) and issubclass(cls, Model):
        return cls
    return type(cls.__name__, (cls, Model), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                           "__doc__": cls.__doc__})


def config_fields(config_cls: type) -> dict[str, dataclasses.Field]:
    """The fields of a model's Config dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(config_cls)}


def conditional_classes(dataset: "Dataset", mode: str = "auto") -> int:
    """How many classes a model conditions on, for its ``conditional`` option: ``auto`` the
    dataset's classes when its labels are classes (0 for the mixtures' component ids),
    ``true`` its labels whatever they are (an InputError without labels), ``false`` 0."""
    if mode == "false":
        return 0
    if mode == "true":
        if dataset.y is None or not dataset.num_classes:
            raise InputError(f"conditional=true needs class labels; dataset {dataset.name!r} has none")
        return dataset.num_classes
    return dataset.conditional_classes


def class_frequencies(dataset: "Dataset", num_classes: int) -> "torch.Tensor | None":
    """The float64 frequencies ``[num_classes]`` of the labels of ``dataset`` (what
    :func:`sample_labels` draws from without a condition), weighted by ``dataset.weights`` when
    it has them; None for an unconditional model."""
    import torch

    if not num_classes:
        return None
    weights = dataset.weights.double() if dataset.weights is not None else None
    counts = torch.bincount(dataset.y, weights=weights, minlength=num_classes).double()
    return counts / counts.sum()


def sample_labels(n: int, condition: Any, num_classes: int, class_freq: "torch.Tensor | None", model: str):
    """The int64 labels ``[n]`` a conditional model samples for: ``condition`` (one label or
    ``n``, checked), or labels drawn from the training frequencies ``class_freq`` when it is
    None; None for an unconditional model (where a condition is an InputError)."""
    import torch

    if not num_classes:
        if condition is not None:
            raise InputError(f"this {model} is unconditional: it cannot sample with a condition")
        return None
    if condition is None:
        return torch.multinomial(class_freq.double(), n, replacement=True)
    y = torch.as_tensor(condition, dtype=torch.int64).reshape(-1)
    y = y.expand(n) if y.numel() == 1 else y
    if len(y) != n or y.min() < 0 or y.max() >= num_classes:
        raise InputError(f"condition must be one label or {n} labels in [0, {num_classes - 1}]")
    return y
