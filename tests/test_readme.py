"""The README and the pages of docs/ say what happens: their Python snippets run as written (in a
scratch directory), their file excerpts match the files, their TOML is a valid config, every line
of their bash blocks is run by scripts/readme_commands.sh (which CI runs), every picture and page
they link exists, and the README stays a short page for users."""
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text() for page in PAGES}
EXCERPT = re.compile(r"# ([\w./-]+\.py)\n")
# Written with the model contract's conformance kit; its links are checked once it exists.
PLUGIN_GUIDE = ROOT / "docs" / "plugin-guide.md"


def blocks(lang):
    return [(page, block) for page in PAGES for block in re.findall(rf"```{lang}\n(.*?)```", TEXT[page], flags=re.S)]


def block_id(item):
    page, block = item
    return f"{page.relative_to(ROOT)}:{block.splitlines()[0][:40]}"


SNIPPETS = [b for b in blocks("python") if not EXCERPT.match(b[1])]
EXCERPTS = [b for b in blocks("python") if EXCERPT.match(b[1])]


def test_the_pages_have_snippets_and_excerpts():
    assert SNIPPETS and EXCERPTS
    assert {"gmm.md", "gan.md", "cvae.md", "metrics.md", "cli.md"} <= {p.name for p in PAGES}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=block_id)
def test_python_snippet_runs_as_written(snippet, tmp_path, monkeypatch):
    page, code = snippet
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(page.relative_to(ROOT)), "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize("excerpt", EXCERPTS, ids=block_id)
def test_file_excerpt_matches_the_file(excerpt):
    page, code = excerpt
    name = EXCERPT.match(code).group(1)
    matches = [p for p in ROOT.glob(f"**/{name}") if ".venv" not in p.parts]
    assert matches, f"{page.name} quotes {name}, which is not in the repository"
    lines = [line for line in code.splitlines()[1:] if line.strip()]
    source = matches[0].read_text().splitlines()
    assert all(line in source for line in lines), f"{page.name}'s {name} differs from {matches[0]}"


def test_toml_example_is_a_valid_gmm_config():
    from aigc_engine.config import build_config
    from aigc_gmm.config import GMMConfig

    (toml,) = [block for _, block in blocks("toml") if 'name = "grid25"' in block]
    values = tomllib.loads("\n".join(line.strip() for line in toml.splitlines()))
    dataset = values.pop("dataset")
    assert build_config(GMMConfig, values, "gmm").n_components == 25 and dataset["name"] == "grid25"


def test_every_bash_line_is_run_by_the_readme_script():
    script = (ROOT / "scripts" / "readme_commands.sh").read_text()
    run_lines = set(re.findall(r"^\s*run '(.*)'$", script, flags=re.M))
    lines = [(page.name, line.strip()) for page, block in blocks("bash") for line in block.splitlines()
             if line.strip()]
    assert lines and [(page, line) for page, line in lines if line not in run_lines] == []


LINKING = PAGES + sorted(ROOT.glob("plugins/*/README.md"))


def local_targets(page):
    """(file, anchor) of each relative link and picture of a page; anchor "" when there is none."""
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    pairs = [t.partition("#")[::2] for t in targets if not re.match(r"[a-z]+:", t)]
    return [((page.parent / path).resolve() if path else page, anchor) for path, anchor in pairs]


def anchors(page):
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", LINKING, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_linked_page_picture_and_heading_exists(page):
    targets = [(f, a) for f, a in local_targets(page) if f.exists() or f != PLUGIN_GUIDE]
    missing = [str(f) for f, _ in targets if not f.exists()]
    assert missing == [], f"{page.name} links what is not there: {missing}"
    unknown = [f"{f.name}#{a}" for f, a in targets if a and a not in anchors(f)]
    assert unknown == [], f"{page.name} links headings that are not there: {unknown}"
    assert page != PAGES[0] or PLUGIN_GUIDE in {f for f, _ in local_targets(page)}  # plugin authors start there


def test_every_picture_in_docs_is_shown_somewhere():
    shown = {f for page in PAGES for f, _ in local_targets(page)}
    assert [p.name for p in (ROOT / "docs").glob("*.png") if p.resolve() not in shown] == []


def test_the_readme_is_a_short_page():
    assert len(TEXT[PAGES[0]].splitlines()) <= 300
