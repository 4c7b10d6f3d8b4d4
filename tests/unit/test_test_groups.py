"""`make test TEST_WORKERS=2`: the e2e package (one Airflow stack) and the reliability package
(one results table) each run whole on one worker; any other module is a group of its own."""

from __future__ import annotations

import pytest

from tests.conftest import test_group

pytestmark = pytest.mark.unit


def test_whole_packages_are_one_group_and_other_modules_their_own():
    assert test_group("tests/e2e/test_chain.py::test_a") == "e2e"
    assert test_group("tests/e2e/secure/test_secure_chain.py::test_b[x]") == "e2e"
    assert test_group("tests/reliability/test_hostile.py::test_c[csv]") == "reliability"
    a = test_group("tests/integration/test_scoring.py::test_d")
    b = test_group("tests/integration/test_scoring.py::test_e")
    assert a == b == "tests/integration/test_scoring.py"
    assert test_group("tests/unit/dev/test_synthetic.py::test_f") != a
