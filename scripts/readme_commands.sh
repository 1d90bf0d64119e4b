#!/usr/bin/env bash
# Runs the commands of the README and of docs/*.md as written, on a fresh clone of this repository
# (its committed HEAD) in a fresh venv, and checks what the pages say they leave behind.
#
#   bash scripts/readme_commands.sh [--all] [WORK_DIR]
#
# Default (what CI runs): the cheap commands: the quickstart's install and first run, the
# Python snippets, the GMM, table, CLI and distributed commands, a config file, the plugin
# template.
# --all adds the test suite, the benchmarks (AIGC_BENCH_ROUNDS=1 unless set) and the CUDA
# compile check. The GPU section runs only where nvidia-smi sees a GPU.
# tests/test_readme.py checks that every line of the pages' bash blocks is run here.
set -euo pipefail

ALL=0
if [[ "${1:-}" == "--all" ]]; then ALL=1; shift; fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/aigc-readme.XXXXXX")}
start=$SECONDS

git clone -q "$REPO" "$WORK/aigc-engine"
cd "$WORK/aigc-engine"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip

OUT_LOG="$WORK/last-stdout"
# run 'COMMAND LINE': one README line, exactly as written; its last stdout line lands in $LAST
run() {
  echo "\$ $1" >&2
  bash -c "$1" | tee "$OUT_LOG"
  LAST=$(tail -n 1 "$OUT_LOG")
}
check() {  # check 'what' CONDITION...
  local what=$1; shift
  if ! "$@"; then echo "readme_commands: FAILED: $what" >&2; exit 1; fi
}
has_files() {  # has_files DIR FILE...
  local dir=$1; shift
  for f in "$@"; do [[ -e "$dir/$f" ]] || { echo "missing $dir/$f" >&2; return 1; }; done
}

# --- Quickstart -------------------------------------------------------------------------------
run 'pip install torch==2.13.0 setuptools wheel && pip install --no-build-isolation -e . && aigc-engine run gmm --dataset ring8 --set n_components=8'
check "the quickstart's run directory holds what the README lists" has_files "$LAST" config.json \
  metrics.jsonl model.safetensors checkpoint.safetensors summary.json samples.png metrics.png

# --- The Python snippets (each ```python block that is not an excerpt of a file) ----------------
# docs/privacy.md's first line, before the snippets: its snippet needs dp-accounting
run 'pip install --no-build-isolation -e ".[privacy]"'
python - README.md docs/*.md <<'PY'
import re, sys
for page in sys.argv[1:]:
    for block in re.findall(r"```python\n(.*?)```", open(page).read(), flags=re.S):
        if re.match(r"# [\w./-]+\.py\n", block):
            continue  # a file's excerpt (tests/test_readme.py compares it with the file)
        print(f"$ python <<{page} snippet>>", file=sys.stderr)
        exec(compile(block, page, "exec"), {"__name__": "__main__"})
PY
check "the snippet wrote points.npy" test -f points.npy

# --- The Python API (runs/penguins-api, penguins-api-test.csv: the snippet of docs/python-api.md) --
run 'aigc-engine sample runs/penguins-api -n 5 -o five.csv'
check "sample reads a saved Synthesizer" bash -c 'test "$(wc -l < five.csv)" -eq 6'
run 'aigc-engine eval runs/penguins-api --dataset penguins-api-test.csv'
check "eval scores a saved Synthesizer on a file" grep -q '"column_shapes"' "$OUT_LOG"

# --- Gaussian mixtures ----------------------------------------------------------------------------
run 'aigc-engine run gmm --dataset grid25 --set n_components=25'
run 'aigc-engine run gmm --dataset points.npy --set n_components=32 --set covariance_type=diag   # streamed'
run 'torchrun --standalone --nproc-per-node 2 -m aigc_engine run gmm --dataset points.npy --device cpu'
run 'aigc-engine gmm-select --dataset ring8 --components 2:16 --criterion bic --out runs/select'
check "gmm-select prints the best run directory last" test "$LAST" = runs/select/best
check "gmm-select writes its selection" has_files runs/select selection.json selection.png best/config.json

# --- Row weights (weighted.npz and survey.csv: written by the snippet of docs/gmm-advanced.md) --
run 'aigc-engine run gmm --dataset weighted.npz --set n_components=2'
check "the weighted mixture gives the first cluster 3/4 of the weight" python -c "
import sys; from aigc_engine.store import io
w = sorted(io.load_state('$LAST/model.safetensors')['weights'].tolist()); sys.exit(not abs(w[1] - 0.75) < 0.02)"
run 'aigc-engine run gmm --dataset survey.csv --set dataset.weight_column=w --set dataset.label_column=region'
check "a weighted table run" has_files "$LAST" encoding.safetensors model.safetensors

# --- Tables (penguins.csv and penguins-test.csv: written by the snippet of docs/tables.md) -----
check "the snippet of docs/tables.md wrote its tables" has_files . penguins.csv penguins-test.csv
run 'aigc-engine run gmm --dataset penguins.csv --set dataset.label_column=species --out runs/gmm-penguins'
check "a table run keeps its encoding" has_files runs/gmm-penguins encoding.safetensors model.safetensors samples.png
run 'aigc-engine sample runs/gmm-penguins -n 400 -o synth.csv'
check "sample -o x.csv writes the table's header and the rows" \
  bash -c 'head -n 1 synth.csv | grep -qx species,island,bill_length_mm,body_mass_g,year,sex && test "$(wc -l < synth.csv)" -eq 401'
run 'aigc-engine sample runs/gmm-penguins -n 50 --condition species=Gentoo -o gentoo.csv'
check "--condition species=Gentoo samples Gentoo penguins only" \
  bash -c 'test "$(tail -n +2 gentoo.csv | cut -d, -f1 | sort -u)" = Gentoo'
run 'aigc-engine eval runs/gmm-penguins'
check "eval of a table run reports the table metrics" grep -q '"detection"' "$OUT_LOG"
run 'aigc-engine eval runs/gmm-penguins --dataset penguins-test.csv --set dataset.label_column=species'
check "eval on another table adds ML efficacy and the DCR ratio" bash -c "grep -q '\"ml_efficacy\"' '$OUT_LOG' && grep -q '\"dcr_ratio\"' '$OUT_LOG'"
run 'aigc-engine run gmm --dataset penguins.csv --set dataset.label_column=species --set missing=marginalize --out runs/gmm-marginal'
check "missing=marginalize samples complete measurements" python -c "
import pandas as pd, subprocess
subprocess.run(['aigc-engine', 'sample', 'runs/gmm-marginal', '-n', '500', '-o', 'marginal.csv'], check=True)
assert not pd.read_csv('marginal.csv')[['bill_length_mm', 'body_mass_g']].isna().any().any()"
run 'aigc-engine run gmm --dataset penguins.csv --set dataset.label_column=species --set dataset.public=species,island,year,sex --set privacy.epsilon=1 --set n_components=2 --out runs/gmm-dp'
check "a private run says what it spent" python -c "
import json; s = json.load(open('runs/gmm-dp/summary.json'))
assert 0 < s['privacy_epsilon'] <= 1 and s['privacy_accountant'], s"
run 'aigc-engine eval runs/gmm-dp --dataset penguins-test.csv'

run 'aigc-engine run diffusion --dataset ring8 --set steps=300 --out runs/diffusion-ring8'
check "the diffusion run wrote its pictures" has_files runs/diffusion-ring8 samples.png progress.png denoising.png
# --- GANs and CVAEs --------------------------------------------------------------------------------
run 'aigc-engine run gan --dataset ring8'
check "a GAN run draws its progress" has_files "$LAST" samples.png metrics.png progress.png model.safetensors
run 'aigc-engine run gan --dataset digits --set steps=300 --out runs/gan-digits'
run 'aigc-engine sample runs/gan-digits -n 64 --condition 3 -o threes.png'
check "a conditional GAN samples a picture" test -s threes.png
run 'aigc-engine run cvae --dataset digits --out runs/cvae-digits'
check "a CVAE run draws its pictures" has_files runs/cvae-digits reconstructions.png interpolation.png samples.png
run 'aigc-engine sample runs/cvae-digits --condition 3 -n 64 -o threes.png'
run 'aigc-engine run cvae --dataset ring8 --set steps=2000'
check "a 2-D latent is drawn" has_files "$LAST" latent.png

# --- CLI ---------------------------------------------------------------------------------------
run 'aigc-engine run gmm --dataset ring8 --set n_components=8 --set max_iter=1 --out runs/ring8'
run 'aigc-engine run --resume runs/ring8 --set max_iter=100'
check "a resumed run keeps its directory" test "$LAST" = runs/ring8
check "the resumed fit went on to convergence" grep -q '"converged": true' runs/ring8/summary.json
run 'aigc-engine sample runs/ring8 -n 1000 -o ring8.png'
check "sample -o writes the picture" test -s ring8.png
run 'aigc-engine eval runs/ring8'
run 'aigc-engine sample runs/select/best -n 100'
check "sample without -o writes RUN/samples.npy" test "$LAST" = runs/select/best/samples.npy
run 'aigc-engine sample runs/select/best -n 100 -o pic.png'
run 'aigc-engine eval runs/select/best'
run 'aigc-engine run --resume runs/select/best'
run 'aigc-engine models'
run 'aigc-engine datasets'
run 'aigc-engine plugins'
run 'aigc-engine info'
python - README.md docs/*.md > grid.toml <<'PY'
import re, sys
text = "".join(open(page).read() for page in sys.argv[1:])
toml = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if 'name = "grid25"' in b][0]
print("\n".join(line.strip() for line in toml.splitlines()))
PY
run 'aigc-engine run gmm --config grid.toml'
run 'torchrun --standalone --nproc-per-node 2 -m aigc_engine run gmm --dataset points.npy --device cpu --set n_components=16'

# --- Writing a plugin --------------------------------------------------------------------------
run 'aigc-engine install ./examples/aigc-kde'
run 'aigc-engine models'
check "the template plugin is listed" grep -q "^kde " "$OUT_LOG"
run 'aigc-engine run kde --dataset ring8'
run 'cp -r examples/aigc-kde ../aigc-myflow'
check "the template was copied" has_files ../aigc-myflow pyproject.toml aigc_kde/model.py tests/test_kde.py
run 'pip install "./examples/aigc-kde[test]"'
run 'python -m pytest -q examples/aigc-kde/tests'
run 'aigc-engine run kde --dataset ring8 --set dataset.n=2000 --out runs/kde-ring8'
check "the kde run writes its directory" has_files runs/kde-ring8 model.safetensors summary.json samples.png

# --- Comparing models ----------------------------------------------------------------------------
run 'aigc-engine compare gmm kde --dataset ring8 --seeds 0,1 --out runs/compare-ring8'
check "compare prints its directory last" test "$LAST" = runs/compare-ring8
check "compare writes its table, picture and runs" has_files runs/compare-ring8 compare.md compare.json compare.png \
  gmm-seed0/model.safetensors gmm-seed1/config.json kde-seed0/summary.json kde-seed1/samples.png
check "the third-party kde is a row of the table" grep -q "^| kde | exact |" runs/compare-ring8/compare.md
run 'aigc-engine compare gmm kde gan cvae --dataset digits --set gan.steps=200 --set cvae.steps=200 --set cvae.iwae_k=100 --seeds 0'
check "every model of the digits comparison has a row" bash -c "grep -c '^| \(gmm\|kde\|gan\|cvae\) |' '$LAST/compare.md' | grep -qx 4"
run 'aigc-engine eval runs/compare-ring8/gmm-seed0 --set dataset.part=holdout'

# --- GPU (only with one) -------------------------------------------------------------------------
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  run 'CUDA_HOME=/usr/local/cuda pip install --no-build-isolation -e .'
  run 'aigc-engine info      # "kernel CUDA support compiled: yes"'
  run 'aigc-engine run gmm --dataset ring8 --device cuda'
fi

# --- The expensive ones: tests, benchmarks, CUDA compile check ------------------------------------
if (( ALL )); then
  run 'pip install --no-build-isolation -e ".[test]" && pytest'
  run 'pip install --no-build-isolation -e ".[bench]"'
  export AIGC_BENCH_ROUNDS=${AIGC_BENCH_ROUNDS:-1}
  run 'pytest bench/ --benchmark-only --benchmark-json bench.json'
  run 'python bench/report.py bench.json'
  run 'bash scripts/build_cuda.sh'
fi
echo "readme_commands: every command ran as written in $((SECONDS - start)) s ($WORK)" >&2
