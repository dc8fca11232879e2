"""``/metrics`` in Prometheus text format (``prometheus-client``).

Sources: the front door's own counters (HTTP answers, WebSocket connections and frames, refused
upgrades), kept here; the SPICE server's statistics (``server.stats``, ``spice/server/stats.py``) and
the display pipeline's ``PipelineStats``, both read at scrape time by a custom collector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from spice.server.websocket import WsStats

_http_answers: Counter[int] = Counter()
_ws_refused: Counter[str] = Counter()
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


IMAGE_TYPE_NAMES = {0: "BITMAP", 1: "QUIC", 101: "LZ_RGB", 103: "FROM_CACHE", 105: "JPEG", 109: "LZ4"}


def _image_type(t) -> str:
    try:
        return IMAGE_TYPE_NAMES.get(int(t), str(int(t)))
    except (TypeError, ValueError):
        return str(t)


class SpiceStatsCollector:
    """Reads the SPICE server's counters (``server.stats``, spice/server/stats.py) and the display
    pipeline's (``PipelineStats``) at scrape time.  Attributes are read defensively: a missing
    counter means a missing series, never a failed scrape."""

    def __init__(self, server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        stats = getattr(self.server, "stats", None)
        if stats is not None:
            yield from self._server_stats(stats)
        pipeline = getattr(self.server, "_pipeline", None)  # never create the pipeline for a scrape
        pstats = getattr(pipeline, "stats", None)
        if pstats is not None:
            yield from self._pipeline_stats(pstats)

    def _server_stats(self, st) -> Iterator[Metric]:
        for attr, name, doc, kind in (
            ("sessions_open", "aiospice_sessions", "Open SPICE sessions", GaugeMetricFamily),
            ("sessions_total", "aiospice_sessions_opened", "SPICE sessions opened", CounterMetricFamily),
            ("connections_open", "aiospice_connections", "Open SPICE channel connections", GaugeMetricFamily),
            (
                "connections_refused",
                "aiospice_connections_refused",
                "Connections over the limit",
                CounterMetricFamily,
            ),
            ("auth_failures", "aiospice_auth_failures", "Failed ticket authentications", CounterMetricFamily),
        ):
            v = getattr(st, attr, None)
            if isinstance(v, int | float):
                yield kind(name, doc, value=v)
        failures = getattr(st, "link_failures", None)
        if isinstance(failures, Mapping):
            c = CounterMetricFamily("aiospice_link_failures", "Failed links by reason", labels=["reason"])
            for reason, n in sorted(failures.items()):
                c.add_metric([str(reason)], n)
            yield c
        channels = getattr(st, "channels", None)
        if not isinstance(channels, Mapping):
            return
        families = {
            "connections_open": GaugeMetricFamily(
                "aiospice_channels", "Open channels by type", labels=["type"]
            ),
            "connections_total": CounterMetricFamily(
                "aiospice_channels_opened", "Channels opened by type", labels=["type"]
            ),
            "bytes_out": CounterMetricFamily(
                "aiospice_channel_bytes_sent", "Bytes sent by channel type", labels=["type"]
            ),
            "bytes_in": CounterMetricFamily(
                "aiospice_channel_bytes_received", "Bytes received by channel type", labels=["type"]
            ),
            "messages_out": CounterMetricFamily(
                "aiospice_channel_messages_sent", "Messages sent by channel type", labels=["type"]
            ),
            "messages_in": CounterMetricFamily(
                "aiospice_channel_messages_received", "Messages received by channel type", labels=["type"]
            ),
            "ack_stalls": CounterMetricFamily(
                "aiospice_ack_window_stalls", "Times a channel waited for the client's ACK", labels=["type"]
            ),
        }
        rtt = GaugeMetricFamily(
            "aiospice_channel_rtt_seconds", "Latest PING round trip by channel type", labels=["type"]
        )
        for ctype, counters in sorted(channels.items()):
            for attr, fam in families.items():
                v = getattr(counters, attr, None)
                if isinstance(v, int | float):
                    fam.add_metric([str(ctype)], v)
            v = getattr(counters, "last_rtt", None)
            if isinstance(v, int | float):
                rtt.add_metric([str(ctype)], v)
        yield from families.values()
        yield rtt

    def _pipeline_stats(self, ps) -> Iterator[Metric]:
        for attr, name, doc in (
            ("frames", "aiospice_display_frames", "Guest frames processed by the display pipeline"),
            ("encodes", "aiospice_display_encodes", "Images encoded"),
            ("encoded_bytes", "aiospice_display_encoded_bytes", "Bytes of encoded images"),
            ("fills", "aiospice_display_fills", "Solid fills sent instead of images"),
            ("stream_frames", "aiospice_display_stream_frames", "Video stream frames encoded"),
        ):
            v = getattr(ps, attr, None)
            if isinstance(v, int | float):
                yield CounterMetricFamily(name, doc, value=v)
        by_type = getattr(ps, "by_type", None)
        if isinstance(by_type, Mapping):
            c = CounterMetricFamily(
                "aiospice_images_encoded", "Images encoded by image type", labels=["image_type"]
            )
            for t, n in sorted(by_type.items()):
                c.add_metric([_image_type(t)], n)
            yield c
        enc = CounterMetricFamily("aiospice_encode_seconds", "CPU time spent encoding", labels=["image_type"])
        per_type = getattr(ps, "encode_seconds_by_type", None)
        if isinstance(per_type, Mapping):
            for t, v in sorted(per_type.items()):
                enc.add_metric([_image_type(t)], v)
        v = getattr(ps, "encode_seconds", None)
        if isinstance(v, int | float):
            enc.add_metric(["all"], v)
        yield enc


def render(server) -> tuple[bytes, str]:
    """The Prometheus exposition text for ``server``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FrontDoorCollector())
    registry.register(SpiceStatsCollector(server))
    return generate_latest(registry), CONTENT_TYPE_LATEST
