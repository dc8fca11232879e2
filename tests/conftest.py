"""Suite-wide hooks: benchmark figures are printed at the end of every run (CI included)."""

from __future__ import annotations

import pytest

_figures: list[tuple[str, str]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and item.get_closest_marker("bench") is not None and report.capstdout:
        _figures.append((item.nodeid, report.capstdout))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _figures:
        return
    terminalreporter.section("benchmark figures")
    for nodeid, text in _figures:
        terminalreporter.write_line(f"--- {nodeid}")
        terminalreporter.write(text if text.endswith("\n") else text + "\n")
