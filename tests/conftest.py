import os

import pytest

SANITIZED = os.environ.get("MEMLENS_SANITIZED") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes seconds; skipped under the sanitizer build")


def pytest_collection_modifyitems(config, items):
    if not SANITIZED:
        return
    skip = pytest.mark.skip(reason="too slow under ASan")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
