"""Which URLs an HTTP source may fetch: its own host (or allowed redirect hosts), public
addresses only unless a private host is allowed by name."""

from __future__ import annotations

import pickle

import pytest

from ml.settings import Settings
from ml.sources.errors import InputRefused
from ml.sources.fetch import check_http_target

pytestmark = pytest.mark.unit

FIRST = "http://203.0.113.7/export.csv"  # a documentation address: never resolved


def _rule(url: str, first: str = FIRST, **settings) -> str:
    with pytest.raises(InputRefused) as info:
        check_http_target(url, first, Settings(**settings))
    return info.value.rule


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.csv",
        "http://10.1.2.3/x.csv",
        "http://192.168.0.1/x.csv",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x.csv",
        "http://[::ffff:127.0.0.1]/x.csv",
        "http://0.0.0.0/x.csv",
    ],
)
def test_private_and_loopback_addresses_are_refused(url):
    assert _rule(url, url) == "private_address"


def test_a_private_host_allowed_by_name_is_fetched():
    check_http_target(
        "http://127.0.0.1:8000/x",
        "http://127.0.0.1:8000/x",
        Settings(http_allowed_private_hosts=["127.0.0.1"]),
    )
    assert (
        _rule("http://localhost/x", "http://localhost/x", http_allowed_private_hosts=["127.0.0.1"])
        == "private_address"
    )


def test_redirects_stay_on_the_host_unless_allowed():
    allowed = {"http_allowed_private_hosts": ["127.0.0.1", "127.0.0.2"]}
    first = "http://127.0.0.1/x"
    check_http_target("http://127.0.0.1/elsewhere", first, Settings(**allowed))
    assert _rule("http://127.0.0.2/x", first, **allowed) == "redirect_other_host"
    check_http_target(
        "http://127.0.0.2/x", first, Settings(**allowed, http_redirect_hosts=["127.0.0.2"])
    )
    assert _rule("file:///etc/passwd", first, **allowed) == "redirect_scheme"


def test_refusals_pickle_with_their_rule():
    exc = InputRefused("no", source="s", rule="too_large")
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.source, again.rule) == ("no", "s", "too_large")
