"""``/metrics`` in Prometheus text format (``prometheus-client``).

Two sources: the front door's own counters (HTTP answers, WebSocket connections and frames, refused
upgrades), kept here, and the SPICE server's statistics (``server.stats``, engineer A's
``spice/server/stats.py``), read at scrape time by a custom collector.  The collector is duck-typed
so a missing or partial stats object yields fewer series, never an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from spice.server.websocket import WsStats

_http_answers: Counter[int] = Counter()
_ws_refused: Counter[str] = Counter()
_ws_open: set[int] = set()
_ws_totals = {"connections": 0, "frames_out": 0, "bytes_out": 0, "frames_in": 0, "bytes_in": 0}
_ws_live: dict[int, WsStats] = {}


def count_http(status: int) -> None:
    _http_answers[status] += 1


def count_ws_refused(reason: str) -> None:
    _ws_refused[reason] += 1


def ws_opened(stats: WsStats) -> None:
    _ws_totals["connections"] += 1
    _ws_live[id(stats)] = stats


def ws_closed(stats: WsStats) -> None:
    _ws_live.pop(id(stats), None)
    for k in ("frames_out", "bytes_out", "frames_in", "bytes_in"):
        _ws_totals[k] += getattr(stats, k)


def _ws_sum(field: str) -> int:
    return _ws_totals[field] + sum(getattr(s, field) for s in _ws_live.values())


class FrontDoorCollector:
    def collect(self) -> Iterator[Metric]:
        http = CounterMetricFamily("aiospice_http_responses", "HTTP responses by status", labels=["status"])
        for status, n in sorted(_http_answers.items()):
            http.add_metric([str(status)], n)
        yield http
        refused = CounterMetricFamily(
            "aiospice_websocket_refused", "WebSocket upgrades refused", labels=["reason"]
        )
        for reason, n in sorted(_ws_refused.items()):
            refused.add_metric([reason], n)
        yield refused
        yield GaugeMetricFamily("aiospice_websocket_open", "Open WebSocket connections", value=len(_ws_live))
        yield CounterMetricFamily(
            "aiospice_websocket_connections",
            "WebSocket connections accepted",
            value=_ws_totals["connections"],
        )
        frames = CounterMetricFamily(
            "aiospice_websocket_frames", "WebSocket data frames", labels=["direction"]
        )
        frames.add_metric(["out"], _ws_sum("frames_out"))
        frames.add_metric(["in"], _ws_sum("frames_in"))
        yield frames
        wbytes = CounterMetricFamily(
            "aiospice_websocket_payload_bytes", "WebSocket payload bytes", labels=["direction"]
        )
        wbytes.add_metric(["out"], _ws_sum("bytes_out"))
        wbytes.add_metric(["in"], _ws_sum("bytes_in"))
        yield wbytes


def _get(obj, *names, default=None):
    """First present attribute or mapping key among ``names``."""
    for n in names:
        if isinstance(obj, Mapping) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            v = getattr(obj, n)
            return v() if callable(v) else v
    return default


def _items(obj) -> Iterable[tuple[object, object]]:
    if obj is None:
        return ()
    if isinstance(obj, Mapping):
        return obj.items()
    return ()


class SpiceStatsCollector:
    """Reads the SPICE server's statistics object at scrape time."""

    def __init__(self, server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        stats = getattr(self.server, "stats", None)
        if stats is None:
            return
        snap = _get(stats, "snapshot", "as_dict", default=None)
        src = snap if snap is not None else stats
        sessions = _get(src, "sessions", "sessions_active", default=None)
        if isinstance(sessions, int | float):
            yield GaugeMetricFamily("aiospice_sessions", "Active SPICE sessions", value=sessions)
        total = _get(src, "sessions_total", default=None)
        if isinstance(total, int | float):
            yield CounterMetricFamily("aiospice_sessions_opened", "SPICE sessions opened", value=total)
        chans = _get(src, "channels", "channels_by_type", default=None)
        if isinstance(chans, Mapping):
            g = GaugeMetricFamily("aiospice_channels", "Open SPICE channels by type", labels=["type"])
            for t, n in _items(chans):
                g.add_metric([str(t)], n)
            yield g
        for field, name, doc in (
            ("bytes_sent", "aiospice_channel_bytes_sent", "Bytes sent per channel type"),
            ("bytes_received", "aiospice_channel_bytes_received", "Bytes received per channel type"),
            ("messages_sent", "aiospice_channel_messages_sent", "Messages sent per channel type"),
            ("messages_received", "aiospice_channel_messages_received", "Messages received per channel type"),
        ):
            per = _get(src, field, default=None)
            if isinstance(per, Mapping):
                c = CounterMetricFamily(name, doc, labels=["type"])
                for t, n in _items(per):
                    c.add_metric([str(t)], n)
                yield c
        frames = _get(src, "frames_by_image_type", "frames", "images", default=None)
        if isinstance(frames, Mapping):
            c = CounterMetricFamily(
                "aiospice_images_encoded", "Images encoded by image type", labels=["image_type"]
            )
            for t, n in _items(frames):
                c.add_metric([str(t)], n)
            yield c
        enc = _get(src, "encode_seconds", "encode_time", "encode_seconds_by_image_type", default=None)
        if isinstance(enc, Mapping):
            c = CounterMetricFamily(
                "aiospice_encode_seconds", "Encode time by image type", labels=["image_type"]
            )
            for t, n in _items(enc):
                c.add_metric([str(t)], n)
            yield c
        for field, name, doc in (
            ("auth_failures", "aiospice_auth_failures", "Failed SPICE ticket authentications"),
            ("ack_stalls", "aiospice_ack_window_stalls", "Times a channel waited for the client's ACK"),
        ):
            v = _get(src, field, default=None)
            if isinstance(v, int | float):
                yield CounterMetricFamily(name, doc, value=v)


def render(server) -> tuple[bytes, str]:
    """The Prometheus exposition text for ``server``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FrontDoorCollector())
    registry.register(SpiceStatsCollector(server))
    return generate_latest(registry), CONTENT_TYPE_LATEST
