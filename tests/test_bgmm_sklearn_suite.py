"""scikit-learn's own tests of BayesianGaussianMixture (``sklearn/mixture/tests/
test_bayesian_mixture.py`` of the installed scikit-learn), run with its estimator replaced by
``aigc_gmm.BayesianGaussianMixture`` and its private normalisers by ours."""
from pathlib import Path
import types

import pytest
import sklearn

SOURCE = Path(sklearn.__file__).parent / "mixture" / "tests" / "test_bayesian_mixture.py"
REPLACE = {
    "from sklearn.mixture import BayesianGaussianMixture\n": "from aigc_gmm import BayesianGaussianMixture\n",
    "from sklearn.mixture._bayesian_mixture import _log_dirichlet_norm, _log_wishart_norm\n":
        "from aigc_gmm._bayesian_mixture import log_dirichlet_norm as _log_dirichlet_norm\n"
        "from aigc_gmm._bayesian_mixture import log_wishart_norm as _log_wishart_norm\n",
}
# tests that call scikit-learn's private methods, whose signatures are not part of the drop-in
NOT_APPLICABLE = {
    "test_compare_covar_type": "calls scikit-learn's private _check_parameters(X) and "
                               "_initialize_parameters(X, random_state) (here hooks of the EM driver)",
}


def _load():
    text = SOURCE.read_text()
    for old, new in REPLACE.items():
        assert old in text, f"scikit-learn's test file changed: {old.strip()!r} not found"
        text = text.replace(old, new)
    module = types.ModuleType("sklearn_test_bayesian_mixture")
    module.__file__ = str(SOURCE)
    exec(compile(text, str(SOURCE), "exec"), module.__dict__)
    assert module.BayesianGaussianMixture.__module__ == "aigc_gmm._bayesian_mixture"
    return module


for _name, _test in vars(_load()).items():
    if _name.startswith("test_") and callable(_test):
        if _name in NOT_APPLICABLE:
            _test = pytest.mark.skip(reason=NOT_APPLICABLE[_name])(_test)
        globals()[_name] = _test
