import os
from collections.abc import Callable

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


COUNTS = pytest.StashKey[list[str]]()


def pytest_configure(config):
    config.stash[COUNTS] = []


@pytest.fixture
def counts(request) -> Callable[[str], None]:
    """Record a line of what a test sent and what came back; the session ends with all of them, passed or not."""

    def record(line: str) -> None:
        print(line)
        request.config.stash[COUNTS].append(f"{request.node.name}: {line.strip()}")

    return record


def pytest_terminal_summary(terminalreporter, config):
    if lines := config.stash.get(COUNTS, []):
        terminalreporter.section("counts")
        for line in lines:
            terminalreporter.write_line(line)
