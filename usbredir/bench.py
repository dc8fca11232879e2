"""Parser throughput on recorded usbredir streams: ours vs libusbredirparser.

``python3 -m usbredir.bench [--quick]`` records two host->guest streams (bulk IN replies of 512 B
and of 64 KiB, 64-bit ids, as a usb-host sends them), parses each with :class:`UsbredirParser`
(fed in ``--chunk`` sized reads, events drained per read as a connection loop would) and with
libusbredirparser through the C test harness (``tests/usbredir_proto/harness.c``, compiled with
gcc when available), and prints packets/s and MB/s for both.  Times are CPU time of the parsing
process (the machine is shared), best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .parser import GuestParser, HostParser
from .proto import BulkPacket

HARNESS_SRC = Path(__file__).resolve().parents[1] / "tests" / "usbredir_proto" / "harness.c"


@dataclass
class Figure:
    name: str
    parser: str
    packets: int
    nbytes: int
    seconds: float

    @property
    def pps(self) -> float:
        return self.packets / self.seconds

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6

    def __str__(self) -> str:
        return (f"{self.name:<14} {self.parser:<18} {self.pps / 1e6:8.3f} M packets/s {self.mbps:10.1f} MB/s "
                f"({self.packets} packets, {self.seconds * 1e3:.1f} ms)")


def record_stream(payload_size: int, count: int) -> bytes:
    """A host->guest stream: the host hello, then ``count`` bulk IN replies of ``payload_size`` bytes."""
    guest = GuestParser()
    host = HostParser()
    host.receive_data(guest.bytes_to_send())
    payload = bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)
    for i in range(count):
        host.send(BulkPacket(id=i, endpoint=0x81, data=payload))
    return host.bytes_to_send()


def bench_ours(stream: bytes, chunk: int, repeat: int) -> tuple[int, float]:
    best = float("inf")
    packets = 0
    view = memoryview(stream)
    for _ in range(repeat):
        p = GuestParser()
        gc.collect()
        t0 = time.process_time()
        n = 0
        for off in range(0, len(stream), chunk):
            p.receive_data(view[off:off + chunk])
            n += len(p.events_received())
        dt = time.process_time() - t0
        if p.error is not None:
            raise RuntimeError(f"parse error in benchmark stream: {p.error}")
        best, packets = min(best, dt), n
    return packets, best


def build_harness(workdir: Path) -> Path | None:
    if shutil.which("gcc") is None or not HARNESS_SRC.exists() or not Path("/usr/include/usbredirparser.h").exists():
        return None
    exe = workdir / "harness"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HARNESS_SRC), "-lusbredirparser"], check=True, timeout=120)
    return exe


def bench_c(exe: Path, path: Path, repeat: int) -> tuple[int, float]:
    best = float("inf")
    packets = 0
    for _ in range(repeat):
        out = subprocess.run([str(exe), "bench", "guest", "255", str(path), "1"], capture_output=True, check=True,
                             timeout=300).stdout.split()
        packets, secs, errors = int(out[0]), float(out[2]), int(out[3])
        if errors:
            raise RuntimeError("libusbredirparser reported parse errors on the benchmark stream")
        best = min(best, secs)
    return packets, best


def run(quick: bool = False, chunk: int = 256 * 1024, repeat: int = 3) -> list[Figure]:
    cases = [("bulk 512 B", 512, 20_000 if quick else 400_000), ("bulk 64 KiB", 65536, 200 if quick else 8_000)]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="usbredir-bench-") as tmp:
        exe = build_harness(Path(tmp))
        for name, size, count in cases:
            stream = record_stream(size, count)
            packets, secs = bench_ours(stream, chunk, repeat)
            figures.append(Figure(name, "aiospice", packets, len(stream), secs))
            if exe is not None:
                path = Path(tmp) / "stream.bin"
                path.write_bytes(stream)
                packets, secs = bench_c(exe, path, repeat)
                figures.append(Figure(name, "libusbredirparser", packets, len(stream), secs))
                path.unlink()
            del stream
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short streams (for CI)")
    ap.add_argument("--chunk", type=int, default=256 * 1024, help="bytes per receive_data call")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (best is reported)")
    args = ap.parse_args()
    for fig in run(args.quick, args.chunk, args.repeat):
        print(fig)


if __name__ == "__main__":
    main()
