import itertools

import coopcache
import pytest
from hypothesis import settings

settings.register_profile("coopcache", database=None, deadline=None)
settings.load_profile("coopcache")

_ids = itertools.count()


@pytest.fixture
def name() -> str:
    """A fresh cache name, configured with the defaults."""
    n = f"test-{next(_ids)}"
    coopcache.configure(n)
    return n


def fresh(**settings: object) -> str:
    n = f"test-{next(_ids)}"
    coopcache.configure(n, **settings)  # type: ignore[arg-type]
    return n
