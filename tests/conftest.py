import os

import pytest

from serve.render import LITELLM_OFFLINE_ENV

# Tests that import litellm (the proxy hooks) use its packaged data instead of trying the network.
os.environ.update(LITELLM_OFFLINE_ENV)


def pytest_collection_modifyitems(config, items):
    """Tests marked `last` (the stack shutdown check) run after every other test that shares the stack;
    `last(2)` runs after those (a test that needs the shared stack gone)."""

    def order(item) -> int:
        marker = item.get_closest_marker("last")
        return 0 if marker is None else marker.args[0] if marker.args else 1

    items.sort(key=order)
