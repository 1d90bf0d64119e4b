"""The README says what happens: its Python snippets run as written (in a scratch directory),
its file excerpts match the files, its TOML is a valid config, and every line of its bash
blocks is run by scripts/readme_commands.sh (which CI runs)."""
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXCERPT = re.compile(r"# ([\w./-]+\.py)\n")


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


SNIPPETS = [b for b in blocks("python") if not EXCERPT.match(b)]
EXCERPTS = [b for b in blocks("python") if EXCERPT.match(b)]


def test_the_readme_has_snippets_and_excerpts():
    assert SNIPPETS and EXCERPTS


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda b: b.splitlines()[0][:40])
def test_python_snippet_runs_as_written(snippet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize("excerpt", EXCERPTS, ids=lambda b: EXCERPT.match(b).group(1))
def test_file_excerpt_matches_the_file(excerpt):
    name = EXCERPT.match(excerpt).group(1)
    matches = [p for p in ROOT.glob(f"**/{name}") if ".venv" not in p.parts]
    assert matches, f"the README quotes {name}, which is not in the repository"
    code = [line for line in excerpt.splitlines()[1:] if line.strip()]
    source = matches[0].read_text().splitlines()
    assert all(line in source for line in code), f"the README's {name} differs from {matches[0]}"


def test_toml_example_is_a_valid_gmm_config():
    from aigc_engine.config import build_config
    from aigc_gmm.config import GMMConfig

    (toml,) = [b for b in blocks("toml") if "[dataset]" in b]
    values = tomllib.loads("\n".join(line.strip() for line in toml.splitlines()))
    dataset = values.pop("dataset")
    assert build_config(GMMConfig, values, "gmm").n_components == 25 and dataset["name"] == "grid25"


def test_every_bash_line_is_run_by_the_readme_script():
    script = (ROOT / "scripts" / "readme_commands.sh").read_text()
    run_lines = set(re.findall(r"^\s*run '(.*)'$", script, flags=re.M))
    lines = [line.strip() for block in blocks("bash") for line in block.splitlines() if line.strip()]
    assert lines and [line for line in lines if line not in run_lines] == []
