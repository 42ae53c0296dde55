"""Shared fixtures, the automatic `engine` marker, and the fast run's import guard.

Two kinds of test live in tests/:

* engine tests, marked `engine` here automatically: every test that uses an engine
  fixture from `tests/engine_fixtures.py` (the embedded model, the tiny PRMs, the
  shared real Ponder servers and their clients; directly or through another
  fixture), every test in a module that starts real server subprocesses itself
  (it imports `start_server` or `launch_server` from `tests.servers`), and the few
  tests listed in `_IMPORT_VLLM` that import vLLM themselves. A test may also carry
  `@pytest.mark.engine` explicitly;
* everything else: unit tests and in-process HTTP tests on stand-in policies, which
  need no model, no torch and no vLLM and run in seconds (`make test-fast`).

Nothing imported here (or by the modules collected with `-m "not engine"`) may
load torch or vLLM at import time; the engine fixtures import them when they run.
`--forbid-import torch --forbid-import vllm` (what `make test-fast` passes) fails
the run if one of them was loaded all the same.
"""

from __future__ import annotations

import sys

import pytest

import tests.servers

# Importing the engine fixtures here registers them for every test module; the
# constants stay importable as tests.conftest.MAX_N etc.
from tests.engine_fixtures import (
    ENGINE_FIXTURES,
    MAX_N,
    MAX_NEW_TOKENS,
    SSE_KEEPALIVE_S,
    client,
    embedded_model,
    float32_client,
    float32_server,
    ponder_server,
    tiny_prms,
)

__all__ = [
    "MAX_N",
    "MAX_NEW_TOKENS",
    "SSE_KEEPALIVE_S",
    "client",
    "embedded_model",
    "float32_client",
    "float32_server",
    "ponder_server",
    "tiny_prms",
]

#: Helpers from tests.servers that start real server subprocesses (Ponder or vLLM).
_SERVER_STARTERS = (tests.servers.start_server, tests.servers.launch_server)


def _starts_servers(module: object) -> bool:
    return any(value is starter for value in vars(module).values() for starter in _SERVER_STARTERS)


#: Tests that import vLLM or torch themselves, though they use no engine fixture:
#: (module file name, test function name). `--forbid-import` finds any missing here.
_IMPORT_VLLM = {
    # engine_args() builds vLLM's AsyncEngineArgs.
    ("test_house_block_size.py", "test_the_engine_starts_with_32_on_cpu_by_default"),
}


def _is_engine_test(item: pytest.Item) -> bool:
    if ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    if (item.path.name, getattr(item, "originalname", item.name)) in _IMPORT_VLLM:
        return True
    module = getattr(item, "module", None)
    return module is not None and _starts_servers(module)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_engine_test(item):
            item.add_marker(pytest.mark.engine)


# The fast run's guard ---------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--forbid-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="fail the run if MODULE was imported (is in sys.modules) by its end; "
        "make test-fast passes torch and vllm",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("forbid_import"):
        config.pluginmanager.register(ImportGuard(config.getoption("forbid_import")))


class ImportGuard:
    """Fails the run if a forbidden module was imported, and says after which test
    (or during collection) it first appeared in sys.modules."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.first_seen: str | None = None
        self.loaded: list[str] = []

    def _loaded(self) -> list[str]:
        # Importing any submodule (`vllm.config`) puts its package in sys.modules too.
        return [name for name in self.names if name in sys.modules]

    def _check(self, where: str) -> None:
        if self.first_seen is None and self._loaded():
            self.first_seen = where

    def pytest_collection_finish(self) -> None:
        self._check("during collection")

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self._check(f"after {nodeid}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._check("at the end of the run")
        self.loaded = self._loaded()
        if self.loaded and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.loaded:
            terminalreporter.section("forbidden imports", red=True, bold=True)
            terminalreporter.line(
                f"{', '.join(self.loaded)} imported, first seen {self.first_seen}: "
                "the fast tests must run without them",
                red=True,
            )
        else:
            terminalreporter.line(f"not imported during this run: {', '.join(self.names)}")
