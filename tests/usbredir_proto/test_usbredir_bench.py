"""Short parser benchmark (prints figures; asserts only that every packet was parsed)."""

from __future__ import annotations

import pytest

from usbredir import bench


@pytest.mark.bench
def test_parser_benchmark_quick(capsys):
    figures = bench.run(quick=True, repeat=1)
    with capsys.disabled():
        print()
        for fig in figures:
            print(fig)
    by = {(f.name, f.parser): f for f in figures}
    assert by[("bulk 512 B", "aiospice")].packets == 20_001
    assert by[("bulk 64 KiB", "aiospice")].packets == 201
    if ("bulk 512 B", "libusbredirparser") in by:
        assert by[("bulk 512 B", "libusbredirparser")].packets == 20_001
