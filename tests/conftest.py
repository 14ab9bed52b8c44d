import os

import pytest

from serve.render import LITELLM_OFFLINE_ENV

# Tests that import litellm (the proxy hooks) use its packaged data instead of trying the network.
os.environ.update(LITELLM_OFFLINE_ENV)


def pytest_collection_modifyitems(config, items):
    """Tests marked `last` (the stack shutdown check) run after every other test that shares the stack."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
