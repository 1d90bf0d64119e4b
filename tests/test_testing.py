"""aigc_engine.testing: check_model passes for a model that keeps the contract (a Model subclass, and
a duck-typed class with only the required members), and fails, naming the rule, for a toy model
that breaks each rule on purpose. The built-in models' checks are in their own test files."""
import dataclasses
import importlib
import sys

import pytest
import torch

from aigc_engine import InputError, Model, testing
from aigc_engine.model import as_model_class
from aigc_engine.testing import RULES, check_model
from conftest import make_entry_point_plugin

TOY_PLUGIN = '''
import dataclasses
import time

import torch

from aigc_engine import InputError, Model, class_frequencies, hookimpl, sample_labels
from aigc_engine.config import option


@dataclasses.dataclass
class ToyConfig:
    steps: int = option(20, help="training steps", ge=1)
    lr: float = option(0.1, help="Adam learning rate", gt=0)


class Toy(Model):
    """A diagonal Gaussian per class fitted by Adam through the core loop: keeps every rule."""
    name = "toy"
    Config = ToyConfig

    def validate(self, dataset):
        if len(dataset) < 2 or len(dataset.shape) != 2:
            raise InputError(f"toy takes at least 2 points N x D, got shape {list(dataset.shape)}")

    def fit(self, dataset, run):
        self.validate(dataset)
        self.num_classes = dataset.conditional_classes
        self.class_freq = class_frequencies(dataset, self.num_classes)
        k, d = max(1, self.num_classes), dataset.shape[1]
        self.params = torch.nn.ParameterDict({"mean": torch.zeros(k, d), "log_std": torch.zeros(k, d)})
        opt = torch.optim.Adam(self.params.parameters(), lr=self.config.lr)
        batches = run.batches(dataset, 64, drop_last=True)
        for step in run.loop(self.config.steps, {"params": self.params, "opt": opt, "data": batches}, log_every=5):
            x, y = next(batches)
            loss = -self.class_log_prob(x, y).mean()
            opt.zero_grad()
            loss.backward()
            self.share_gradients(run)
            opt.step()
        self.finish(run)

    def share_gradients(self, run):
        for p in self.params.parameters():  # the global batch's gradient: the mean over processes
            run.all_reduce(p.grad)
            p.grad /= run.world_size

    def finish(self, run):
        pass

    def labels(self, y, n):
        return y if (self.num_classes and y is not None) else torch.zeros(n, dtype=torch.int64)

    def class_log_prob(self, x, y):
        idx = self.labels(y, len(x))
        mean, log_std = self.params["mean"][idx], self.params["log_std"][idx]
        return torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum(1)

    @torch.no_grad()
    def log_prob(self, x):
        if not self.num_classes:
            return self.class_log_prob(x, None)
        per_class = torch.stack([self.class_log_prob(x, torch.full((len(x),), c)) for c in range(self.num_classes)], 1)
        return torch.logsumexp(per_class + self.class_freq.log().float(), 1)

    @torch.no_grad()
    def sample(self, n, condition=None):
        y = sample_labels(n, condition, self.num_classes, self.class_freq, "toy")
        idx = self.labels(y, n)
        mean, log_std = self.params["mean"][idx], self.params["log_std"][idx]
        return mean + log_std.exp() * torch.randn(mean.shape)

    def evaluate(self, dataset, run):
        return {"mean_log_prob": float(self.log_prob(dataset.x).mean())}

    def state_dict(self):
        return {"mean": self.params["mean"].detach(), "log_std": self.params["log_std"].detach(),
                "num_classes": self.num_classes, "class_freq": self.class_freq if self.num_classes else []}

    def load_state_dict(self, state):
        self.params = torch.nn.ParameterDict({"mean": state["mean"], "log_std": state["log_std"]})
        self.num_classes = int(state["num_classes"])
        self.class_freq = state["class_freq"] if self.num_classes else None


@dataclasses.dataclass
class NoDefaultConfig:
    steps: int


class ConfigWithoutDefault(Toy):  # breaks: config
    Config = NoDefaultConfig


class AcceptsAnything(Toy):  # breaks: validate (rows of shape [3, 5] are accepted, and fit fails on them)
    def validate(self, dataset):
        pass


class FitFails(Toy):  # breaks: fit
    def fit(self, dataset, run):
        raise RuntimeError("the optimiser diverged")


class WrongShape(Toy):  # breaks: sample
    def sample(self, n, condition=None):
        return super().sample(n, condition)[:, :1]


class ForgetsScale(Toy):  # breaks: state_round_trip
    def state_dict(self):
        state = super().state_dict()
        state["log_std"] = torch.zeros_like(state["log_std"])
        return state


class Unseeded(Toy):  # breaks: reproducible_fit
    def finish(self, run):
        noise = torch.randn(self.params["mean"].shape, generator=torch.Generator().manual_seed(time.time_ns()))
        self.params["mean"].data += 0.1 * noise


class NotADensity(Toy):  # breaks: log_prob (exp integrates to e)
    def log_prob(self, x):
        return super().log_prob(x) + 1.0


class IgnoresCondition(Toy):  # breaks: condition
    def sample(self, n, condition=None):
        sample_labels(n, condition, self.num_classes, self.class_freq, "toy")  # checked, then ignored
        return super().sample(n, torch.tensor(0) if self.num_classes else None)


class BadMetric(Toy):  # breaks: evaluate
    def evaluate(self, dataset, run):
        return {"verdict": "fine"}


class Unresumable(Toy):  # breaks: resume (counts steps outside the loop's state)
    name = "toy_unresumable"

    def share_gradients(self, run):
        super().share_gradients(run)
        self.steps_here = getattr(self, "steps_here", 0) + 1

    def finish(self, run):
        self.params["mean"].data += 1e-3 * self.steps_here


class RankBound(Toy):  # breaks: world_size (each process follows its own half of the batch)
    name = "toy_rank_bound"

    def share_gradients(self, run):
        pass


@hookimpl
def aigc_engine_register_models(register):
    for cls in (Toy, Unresumable, RankBound):
        register(cls)
'''

BROKEN = [("ConfigWithoutDefault", "config"), ("AcceptsAnything", "validate"), ("FitFails", "fit"),
          ("WrongShape", "sample"), ("ForgetsScale", "state_round_trip"), ("Unseeded", "reproducible_fit"),
          ("NotADensity", "log_prob"), ("IgnoresCondition", "condition"), ("BadMetric", "evaluate"),
          ("Unresumable", "resume")]
SLOW = ("world_size",)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy plugin, installed as an entry-point plugin (the CLI rules run it in subprocesses)."""
    root = make_entry_point_plugin(tmp_path_factory.mktemp("site"), "aigc-test-toy", "toy", "aigc_test_toy",
                                   TOY_PLUGIN)
    sys.path.insert(0, str(root))
    yield importlib.import_module("aigc_test_toy")
    sys.path.remove(str(root))
    sys.modules.pop("aigc_test_toy", None)
    importlib.invalidate_caches()


def test_every_rule_is_broken_by_one_toy():
    assert {rule for _, rule in BROKEN} | set(SLOW) == set(RULES)


def test_a_model_that_keeps_the_contract_passes(toy):
    check_model(toy.Toy, skip=SLOW)
    # labelled data: the model is conditional and the condition rule checks it on the data itself
    check_model(toy.Toy, dataset=testing.two_classes(dim=3), skip=SLOW)


@pytest.mark.parametrize("cls, rule", BROKEN)
def test_a_broken_rule_fails_with_its_name(toy, cls, rule):
    with pytest.raises(AssertionError, match=rf"^check_model\[{rule}\]: "):
        check_model(getattr(toy, cls), skip=SLOW)


def test_validate_must_raise_input_error_not_another_exception(toy):
    class Crashes(toy.Toy):
        def validate(self, dataset):
            if len(dataset.shape) != 2:
                raise IndexError("not points")

    with pytest.raises(AssertionError, match=r"^check_model\[validate\]: validate raised IndexError"):
        check_model(Crashes, skip=SLOW)


def test_skip_and_unknown_rules(toy):
    check_model(toy.NotADensity, skip=("log_prob", *SLOW))
    with pytest.raises(ValueError, match="unknown rule 'speed'"):
        check_model(toy.Toy, skip=("speed",))


def test_config_overrides_reach_the_model(toy):
    with pytest.raises(InputError, match="toy: steps must be >= 1, got 0"):
        check_model(toy.Toy, config={"steps": 0}, skip=SLOW)


@pytest.mark.slow
def test_interrupted_run_resumes_bit_identical_and_world_size_does_not_matter(toy):
    check_model(toy.Toy, distributed=True, skip=RULES[:-2])


@pytest.mark.slow
def test_unshared_gradients_break_world_size(toy):
    with pytest.raises(AssertionError, match=r"^check_model\[world_size\]: 2 processes end differently"):
        check_model(toy.RankBound, distributed=True, skip=(*RULES[:-2], "resume"))


def test_resume_runs_in_process_and_world_size_needs_the_installed_plugin(toy):
    class Unregistered(toy.Toy):
        name = "toy_nowhere"

    check_model(Unregistered, skip=RULES[:-2])  # resume: no CLI, no plugin needed
    with pytest.raises(AssertionError, match=r"^check_model\[world_size\]: model 'toy_nowhere' is not this class"):
        check_model(Unregistered, distributed=True, skip=RULES[:-1])


@dataclasses.dataclass
class GaussianConfig:
    jitter: float = 1e-6


class Gaussian:
    """One Gaussian over the flattened rows, written from the documented contract alone: ``name``,
    ``Config``, ``fit``, ``sample``, ``state_dict``, ``load_state_dict``; no Model base class, no
    ``validate``, nothing about conditions (the core keeps those rules)."""
    name = "duck_gaussian"
    Config = GaussianConfig

    def fit(self, dataset, run):
        x = dataset.x.flatten(1).double()
        cov = torch.atleast_2d(torch.cov(x.T)) + self.config.jitter * torch.eye(x.shape[1], dtype=torch.float64)
        self.mean, self.chol, self.shape = x.mean(0), torch.linalg.cholesky(cov), tuple(dataset.shape[1:])

    def sample(self, n, condition=None):
        z = torch.randn(n, len(self.mean), dtype=torch.float64)
        return (self.mean + z @ self.chol.T).float().reshape(n, *self.shape)

    def state_dict(self):
        return {"mean": self.mean, "chol": self.chol, "shape": list(self.shape)}

    def load_state_dict(self, state):
        self.mean, self.chol, self.shape = state["mean"], state["chol"], tuple(state["shape"])


def test_a_duck_typed_model_with_only_the_required_members_passes():
    check_model(Gaussian, dataset="ring8")  # a registered name, opened with its defaults
    check_model(Gaussian, dataset=testing.tiny_dataset())  # a Dataset: 512 points of ring8
    check_model(Gaussian, dataset=testing.two_classes(dim=3))  # labelled: still unconditional


def test_a_sample_with_one_row_too_many_breaks_the_sample_rule():
    class OneTooMany(Gaussian):
        def sample(self, n, condition=None):
            return super().sample(n + 1, condition)

    with pytest.raises(AssertionError, match=r"^check_model\[sample\]: sample\(1\) must be a tensor of shape \[1, 2\], "
                                             r"got \[2, 2\]"):
        check_model(OneTooMany, dataset="ring8")


@pytest.mark.parametrize("cls", [Gaussian, type("Plain", (Gaussian, Model), {})], ids=["duck-typed", "Model"])
def test_the_core_refuses_empty_data_and_a_condition_to_an_unconditional_model(cls):
    model = as_model_class(cls)()
    with pytest.raises(InputError, match="dataset 'ring8' has no rows"):
        model.validate(testing.tiny_dataset().subset(slice(0, 0)))
    model.fit(testing.tiny_dataset(), None)
    for given in ((torch.tensor(0),), {"condition": torch.zeros(3, dtype=torch.int64)}):
        args, kwargs = (given, {}) if isinstance(given, tuple) else ((), given)
        with pytest.raises(InputError, match="is unconditional"):
            model.sample(3, *args, **kwargs)
    assert model.sample(3).shape == (3, 2) and model.sample(3, None).shape == (3, 2)


def test_the_core_rules_wrap_each_method_once():
    class Sub(Gaussian, Model):
        pass

    class SubSub(Sub):
        pass

    assert SubSub.sample is Sub.sample and SubSub.validate is Sub.validate
    assert Sub.sample.__wrapped__ is Gaussian.sample
