"""The neural plugin example of docs/plugin-api.md, trained through the loop, interrupted and
resumed."""
import re
from pathlib import Path

import torch

from aigc_engine import Run, data, io

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugin-api.md"


def _example() -> dict:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    source = next(b for b in blocks if "class MMDNet" in b)
    namespace: dict = {}
    exec(compile(source, "docs/plugin-api.md", "exec"), namespace)
    return namespace


def test_neural_example_trains_and_resumes_exactly(tmp_path):
    ns = _example()
    ring = data.ring8(n=1000)

    def fit(run_dir, steps, resume=False):
        model = ns["MMDNet"](ns["MMDConfig"](steps=steps, batch_size=64))
        torch.manual_seed(0)
        model.fit(ring, Run(run_dir, device="cpu", seed=0, progress=False, resume=resume))
        return model

    whole = fit(tmp_path / "a", 40)
    fit(tmp_path / "b", 25)  # stops at 25 with a checkpoint, as an interrupted run would
    resumed = fit(tmp_path / "b", 40, resume=True)
    for k, v in whole.state_dict()["ema"].items():
        assert torch.equal(v, resumed.state_dict()["ema"][k])
    assert float(ns["mmd"](ring.x[:200], whole.sample(200))) < float(ns["mmd"](ring.x[:200], torch.randn(200, 2)))
    io.save_state(tmp_path / "m.safetensors", whole.state_dict())
    again = ns["MMDNet"]()
    again.load_state_dict(io.load_state(tmp_path / "m.safetensors"))
    torch.manual_seed(1)
    a = again.sample(5)
    torch.manual_seed(1)
    assert torch.equal(a, whole.sample(5))
