"""scikit-learn's own tests of GaussianMixture (``sklearn/mixture/tests/test_gaussian_mixture.py``
of the installed scikit-learn), run with its estimator replaced by ``aigc_gmm.GaussianMixture``."""
from pathlib import Path
import types

import numpy as np
import pytest
import sklearn

SOURCE = Path(sklearn.__file__).parent / "mixture" / "tests" / "test_gaussian_mixture.py"
OLD_IMPORT = "from sklearn.mixture import GaussianMixture\n"
# tests of scikit-learn's private internals rather than of the estimator's behaviour
NOT_APPLICABLE = {
    "test_gaussian_mixture_precisions_init": "passes a tuple to scikit-learn's private "
        "GaussianMixture._set_parameters (here a hook taking the EM driver's parameter record)",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": "mocks scikit-learn's "
        "private sklearn.mixture._gaussian_mixture._estimate_gaussian_parameters, which this "
        "estimator does not call (its M-step works on the pass's statistics)",
}


@pytest.fixture
def global_random_seed():
    """scikit-learn's conftest fixture at its default (SKLEARN_TESTS_GLOBAL_RANDOM_SEED unset)."""
    return 42


@pytest.fixture
def global_dtype():
    """scikit-learn's conftest fixture at its default (float64)."""
    return np.float64


def _load():
    text = SOURCE.read_text()
    assert OLD_IMPORT in text, "scikit-learn's test file changed: its GaussianMixture import is not found"
    text = text.replace(OLD_IMPORT, "from aigc_gmm import GaussianMixture\n")
    module = types.ModuleType("sklearn_test_gaussian_mixture")
    module.__file__ = str(SOURCE)
    exec(compile(text, str(SOURCE), "exec"), module.__dict__)
    return module


_module = _load()
for _name, _test in vars(_module).items():
    if _name.startswith("test_") and callable(_test):
        if _name in NOT_APPLICABLE:
            _test = pytest.mark.skip(reason=NOT_APPLICABLE[_name])(_test)
        globals()[_name] = _test
