"""What the neural plugins share through the core: config checks (NaN and inf refused, a Literal's
choices), the diffusion samplers' one list, the fitted and count guards, the lazy names of the
plugin packages, old state keys still read, and the size of their functions and files."""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import torch

from aigc_engine import InputError, Run, data, neural
from aigc_engine.config import build_config, check_config, describe_fields, option

ROOT = Path(__file__).resolve().parent.parent
NEURAL = [ROOT / "plugins" / p for p in ("gan/aigc_gan", "cvae/aigc_cvae", "diffusion/aigc_diffusion")]


@dataclasses.dataclass
class Toy:
    lr: float = option(1e-3, help="a rate", gt=0)
    gamma: float = option(0.0, help="any number")
    betas: tuple[float, float] = option((0.5, 0.9), ge=0, lt=1)
    plain: float = 1.0
    limit: float | None = option(None, ge=0)


@pytest.mark.parametrize("key", ["lr", "gamma", "plain", "limit"])
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_float_options_refuse_nan_and_inf(key, bad):
    with pytest.raises(InputError, match=f"^toy: {key} must be a finite number, got {bad}$"):
        build_config(Toy, {key: bad}, "toy")
    with pytest.raises(InputError, match=f"{key} must be a finite number"):
        check_config(Toy(**{key: float(bad)}), "toy")


def test_tuple_options_refuse_nan_in_any_element():
    with pytest.raises(InputError, match="betas must be a finite number"):
        build_config(Toy, {"betas": "0.5,nan"}, "toy")
    assert build_config(Toy, {"betas": "0.1,0.2", "gamma": "-3", "limit": "none"}, "toy").betas == (0.1, 0.2)


def test_gmm_checkpoint_seconds_nan_is_refused():
    from aigc_gmm.config import GMMConfig

    with pytest.raises(InputError, match="checkpoint_seconds must be a finite number"):
        build_config(GMMConfig, {"checkpoint_seconds": "nan"}, "gmm")


@pytest.mark.parametrize("key, value", [("guidance", "nan"), ("eta", "nan"), ("guidance", "inf"),
                                        ("logsnr_min", "-inf"), ("label_dropout", "nan")])
def test_diffusion_refuses_nan_and_inf(key, value):
    from aigc_diffusion import Diffusion, DiffusionConfig

    with pytest.raises(InputError, match=f"{key} must be a finite number"):
        build_config(DiffusionConfig, {key: value}, "diffusion")
    with pytest.raises(InputError, match=f"{key} must be a finite number"):
        Diffusion(DiffusionConfig(**{key: float(value)}))


def test_a_literal_field_outside_its_choices_is_refused_by_the_model():
    from aigc_gan import GAN, GANConfig

    with pytest.raises(InputError, match="gan: loss must be one of ns, hinge, lsgan, wgan, got 'banana'"):
        GAN(GANConfig(loss="banana"))


def test_the_sampler_registry_is_the_list_the_config_and_the_cli_accept():
    from aigc_diffusion import SAMPLERS, DiffusionConfig
    from aigc_diffusion.samplers.base import Sampler
    from aigc_engine.config import option_spec

    field = {f.name: f for f in dataclasses.fields(DiffusionConfig)}["sampler"]
    assert option_spec(field).choices == tuple(SAMPLERS) == ("ddpm", "ddim", "dpm++2m")
    for name, cls in SAMPLERS.items():
        assert issubclass(cls, Sampler) and cls.name == name
        assert build_config(DiffusionConfig, {"sampler": name}, "diffusion").sampler == name
    with pytest.raises(InputError, match="sampler must be one of ddpm, ddim, dpm\\+\\+2m, got 'euler'"):
        build_config(DiffusionConfig, {"sampler": "euler"}, "diffusion")
    shown = [line for line in describe_fields(DiffusionConfig) if line.startswith("sampler:")]
    assert shown and shown[0].startswith("sampler: " + " | ".join(SAMPLERS) + "  ")


def test_the_guards():
    assert neural.fitted("net", "gan") == "net"
    with pytest.raises(InputError, match="^the gan model is not fitted$"):
        neural.fitted(None, "gan")
    with pytest.raises(InputError, match="must be >= 1, got 0"):
        neural.check_count(0)
    with pytest.raises(InputError, match="^not a cvae model state: KeyError"):
        with neural.reading_state("cvae"):
            {}["net"]


def test_data_scale_and_snapshots():
    assert neural.data_scale(torch.tensor([1.0, 3.0]), True) == pytest.approx(2 ** 0.5)
    assert neural.data_scale(torch.ones(3), True) == 1.0 and neural.data_scale(torch.randn(9), False) == 1.0
    assert [s for s in range(1, 11) if neural.snapshot_due(s, 10, 3)] == [3, 6, 9, 10]
    assert [s for s in range(1, 11) if neural.snapshot_due(s, 10, 0)] == [10]
    snaps, net = neural.new_snapshots(), torch.nn.Linear(1, 1)
    neural.take_snapshot(snaps, 4, net, lambda: torch.zeros(2, 1))
    assert snaps["steps"] == [4] and len(snaps["time"]) == 1 and net.training
    assert neural.progress_figure(neural.new_snapshots(), "t") == {}
    assert set(neural.progress_figure(snaps, "t")) == {"progress.png"}


def test_early_stopping_keeps_the_best_weights_and_stops_after_patience():
    net = torch.nn.Linear(1, 1, bias=False)
    stop = neural.EarlyStopping(patience=2)
    with torch.no_grad():
        net.weight.fill_(1.0)
    assert not stop.update(0.5, 10, net)  # the best so far: its weights kept
    with torch.no_grad():
        net.weight.fill_(2.0)
    assert not stop.update(0.5, 20, net)  # not lower: one evaluation without improvement
    assert stop.update(0.7, 30, net)  # two: stop
    clone = neural.EarlyStopping(patience=2)
    clone.load_state_dict(stop.state_dict())
    assert (clone.best, clone.step, clone.since) == (0.5, 10, 2)
    clone.restore(net)
    assert float(net.weight) == 1.0
    empty = torch.nn.Linear(1, 1)
    before = empty.weight.detach().clone()
    neural.EarlyStopping(patience=1).restore(empty)  # nothing recorded: unchanged
    assert torch.equal(empty.weight, before)
    with pytest.raises(InputError, match="patience must be >= 1"):
        neural.EarlyStopping(patience=0)


@pytest.mark.parametrize("package, name", [("aigc_gan", "GAN"), ("aigc_cvae", "CVAEConfig"),
                                           ("aigc_diffusion", "sample_loop"), ("aigc_gmm", "EMFit")])
def test_plugin_packages_import_their_names_on_first_use(package, name):
    module = importlib.import_module(package)
    assert name in dir(module) and getattr(module, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        module.nothing  # noqa: B018


def test_a_cvae_saved_with_the_old_shape_key_still_loads(tmp_path):
    from aigc_cvae import CVAE, CVAEConfig

    model = CVAE(CVAEConfig(steps=3, width=8, depth=1, eval_every=1, kl_warmup=0, iwae_k=2))
    model.fit(data.ring8(n=200), Run(tmp_path, seed=0, device="cpu", distributed=False, progress=False))
    state = model.state_dict()
    assert "data_shape" in state and "shape" not in state
    state["shape"] = state.pop("data_shape")
    old = CVAE(CVAEConfig())
    old.load_state_dict(state)
    assert old.shape == (2,) and old.sample(5).shape == (5, 2)
