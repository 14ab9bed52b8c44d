import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked `last` (the stack shutdown check) run after every other test that shares the stack."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
