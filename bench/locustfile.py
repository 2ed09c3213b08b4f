"""Playback load: each locust user is a viewer whose player is bench/player.py.

    locust -f bench/locustfile.py --headless --host http://127.0.0.1:7080 -u 10 -t 60s

(from the repository root; `python -m bench.loadtest` runs it with reports and a plot). The
player model decides everything (what to steer, which range from which URL, when to wait);
this file only performs its actions over HTTP and turns what it reports into locust
statistics:

- `POST /v1/steer` and every segment `GET` are ordinary locust requests (segments are named
  `segment @<appliance>`, so the report shows the load per appliance; a segment that fails
  over is a failed request);
- the viewer's experience is reported as custom requests of type `PLAYER`: `startup` (time to
  first frame), `rebuffer` (each stall's length) and `session` (its length; a failed session
  is a failure whose message is the reason);
- with `--player-log FILE` every session report and a timeline of segments and failovers go
  to a JSON-lines file, which bench/loadtest.py turns into the summary and the plot.

The defaults play the demo fleet (`make demo`): steering on 127.0.0.1:7080, its sample files.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from locust import FastHttpUser, between, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

from bench.player import (
    DEMO_TITLES,
    MIB,
    Done,
    Fetch,
    Player,
    PlayerConfig,
    PlayerEvent,
    SessionReport,
    Steer,
    Wait,
    option_error,
    parse_title,
)
from bench.timeline import player_log_line

DEMO_STEERING = "http://127.0.0.1:7080"


class PlayerFailure(Exception):
    """A failed session, as locust's failure statistics show it."""


@dataclass(frozen=True)
class Settings:
    """The players' options, from locust's command line (all have the demo's defaults)."""

    titles: tuple[tuple[str, ...], ...]
    steering: tuple[str, ...]
    client_ip: str
    request_timeout_s: float
    player: PlayerConfig

    @classmethod
    def from_options(cls, opts: Any, host: str | None) -> Settings:
        """Validate the parsed options; a bad one raises ValueError naming the option."""
        titles = tuple(parse_title(t) for t in str(opts.titles).split(",") if t.strip())
        if not titles:
            raise ValueError("--titles: give at least one title")
        steering = tuple(u.strip().rstrip("/") for u in str(opts.steering_urls).split(",") if u)
        steering = steering or ((host or DEMO_STEERING).rstrip("/"),)
        for url in steering:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--steering-urls: {url!r} is not an http(s) URL")
        if not opts.request_timeout_s > 0:
            raise ValueError(f"--request-timeout-s must be positive, not {opts.request_timeout_s}")
        try:
            player = PlayerConfig(
                bitrate_bps=opts.bitrate_bps,
                extra_track_bitrate_bps=opts.audio_bitrate_bps,
                segment_bytes=opts.segment_bytes,
                startup_buffer_s=opts.startup_buffer_s,
                buffer_target_s=opts.buffer_target_s,
                session_s=opts.session_s,
                max_urls=opts.max_urls,
            )
        except ValueError as exc:  # name the option as the user typed it
            raise ValueError(option_error(exc)) from None
        return cls(titles, steering, opts.client_ip, opts.request_timeout_s, player)


# The player's options: (flag, type, default, help); the defaults play the demo fleet.
OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    ("--titles", str, DEMO_TITLES,
     "comma-separated titles; a title is content ids joined by '+' (video+audio)"),
    ("--steering-urls", str, "",
     "comma-separated steering replicas, tried in order (default: --host)"),
    ("--client-ip", str, "127.0.0.1",
     "the client_ip sent to steering (signed URLs are bound to it)"),
    ("--bitrate-bps", float, 8e6, "the first track's bitrate"),
    ("--audio-bitrate-bps", float, 128e3, "each further track's bitrate"),
    ("--segment-bytes", int, 2 * MIB, "bytes per range request"),
    ("--startup-buffer-s", float, 4.0, "media buffered before playback starts"),
    ("--buffer-target-s", float, 30.0, "most media buffered ahead of the playhead"),
    ("--session-s", float, 40.0, "media seconds a session watches"),
    ("--max-urls", int, 3, "URLs asked of steering per content id (the failover depth)"),
    ("--request-timeout-s", float, 10.0,
     "connect and read timeout of each request (a timeout fails over)"),
    ("--player-log", str, "", "JSON-lines file of sessions, segments and failovers"),
)  # fmt: skip


def default_options() -> argparse.Namespace:
    """The options as parsed from an empty command line (locust's library API has none)."""
    return argparse.Namespace(
        **{flag.lstrip("-").replace("-", "_"): default for flag, _, default, _ in OPTIONS}
    )


def _add_options(parser: LocustArgumentParser) -> None:
    group = parser.add_argument_group("edgefleet player (bench/player.py)")
    for flag, kind, default, help_text in OPTIONS:
        group.add_argument(flag, type=kind, default=default, help=help_text)


class PlayerLog:
    """The JSON-lines timeline: one object per line, each with its wall-clock time `t`."""

    def __init__(self, out: IO[str] | None) -> None:
        self.out = out

    def write(self, kind: str, **fields: Any) -> None:
        """One line (greenlets never interleave inside a write: there is no yield in it)."""
        if self.out is not None:
            self.out.write(player_log_line(kind, time.time(), **fields))

    def close(self) -> None:
        """Flush and close the file."""
        if self.out is not None:
            self.out.close()
            self.out = None


LOG = PlayerLog(None)


def _open_log(environment: Environment, **_kwargs: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    try:  # a bad option stops locust here, once, rather than in every viewer it spawns
        Settings.from_options(opts, environment.host)
    except ValueError as exc:
        raise SystemExit(f"bench/locustfile.py: {exc}") from None
    path = opts.player_log
    if path:
        LOG.out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the whole run


def _close_log(**_kwargs: Any) -> None:
    LOG.close()


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    # locust's EventHook.add_listener has no annotations (mypy --strict refuses a direct call).
    hook.add_listener(handler)


_listen(events.init_command_line_parser, _add_options)
_listen(events.init, _open_log)
_listen(events.quitting, _close_log)


class Viewer(FastHttpUser):
    """A viewer: presses play on a title, watches it, picks another."""

    host = DEMO_STEERING
    wait_time = between(0.5, 2.0)  # choosing the next title

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options or default_options()
        self.settings = Settings.from_options(opts, environment.host)
        self.network_timeout = self.connection_timeout = self.settings.request_timeout_s
        super().__init__(environment)
        self.player: Player | None = None
        self.rng = random.Random()

    @task
    def watch(self) -> None:
        """One session, start to end."""
        s = self.settings
        title = self.rng.choice(s.titles)
        player = Player(s.player, title, time.monotonic(), steering_endpoints=len(s.steering))
        self.player = player
        while True:
            action = player.next_action(time.monotonic())
            if isinstance(action, Done):
                break
            if isinstance(action, Steer):
                self._steer(player, action)
            elif isinstance(action, Wait):
                # locust has gevent monkey-patch time.sleep: this yields to the other viewers.
                time.sleep(action.seconds)
            else:
                self._fetch(player, action)
            self._report_events(player.drain_events())
        self._report_events(player.drain_events())
        self._report_session(action.report)
        self.player = None

    def on_stop(self) -> None:
        """The test is over: a session still playing ends here ("cut")."""
        player, self.player = self.player, None
        if player is not None:
            report = player.stop(time.monotonic())
            self._report_events(player.drain_events())
            self._report_session(report)

    # -- performing the player's actions -----------------------------------------------------

    def _steer(self, player: Player, action: Steer) -> None:
        url = f"{self.settings.steering[action.endpoint]}/v1/steer"
        body = {
            "client_ip": self.settings.client_ip,
            "content_ids": list(action.content_ids),
            "max_urls": action.max_urls,
        }
        with self.client.post(url, json=body, name="/v1/steer", catch_response=True) as resp:
            reason = _problem(resp)
            answer: Any = None
            if reason is None:
                try:
                    answer = json.loads(resp.content or b"")
                except ValueError:
                    reason = "answer is not JSON"
            if reason is None and isinstance(answer, dict):
                resp.success()
                player.steered(time.monotonic(), answer)
            else:
                reason = reason or "answer is not a JSON object"
                resp.failure(reason)
                player.steer_failed(time.monotonic(), reason)

    def _fetch(self, player: Player, fetch: Fetch) -> None:
        headers = {"Range": fetch.range_header}
        name = f"segment @{fetch.appliance}"
        with self.client.get(fetch.url, headers=headers, name=name, catch_response=True) as resp:
            reason = _problem(resp, ok=(206,))
            body = 0
            if reason is None:
                try:
                    body = len(resp.content or b"")
                except Exception as exc:  # the connection broke inside the body
                    reason = f"body: {exc!r}"
            now = time.monotonic()
            if reason is None:
                content_range = resp.headers.get("Content-Range") if resp.headers else None
                refused = player.segment_received(now, fetch, resp.status_code, content_range, body)
                if refused:
                    resp.failure(refused)
                else:
                    resp.success()
                    LOG.write("segment", appliance=fetch.appliance, bytes=body)
            else:
                resp.failure(reason)
                player.fetch_failed(now, fetch, reason)

    # -- reporting ---------------------------------------------------------------------------

    def _report_events(self, player_events: list[PlayerEvent]) -> None:
        for e in player_events:
            if e.kind == "startup":
                self._custom("startup", e.seconds)
            elif e.kind == "rebuffer":
                self._custom("rebuffer", e.seconds)
                LOG.write("rebuffer", seconds=round(e.seconds, 3))
            elif e.kind == "failover":
                LOG.write("failover", detail=e.detail)

    def _report_session(self, report: SessionReport) -> None:
        error = PlayerFailure(report.error) if report.outcome == "failed" else None
        self._custom("session", report.duration_s, error)
        LOG.write("session", **report.to_json())

    def _custom(self, name: str, seconds: float, error: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="PLAYER",
            name=name,
            response_time=seconds * 1000,
            response_length=0,
            exception=error,
            context={},
        )


def _problem(resp: Any, ok: tuple[int, ...] = (200,)) -> str | None:
    """Why a response is unusable (connection error, timeout, status), or None."""
    if resp.status_code == 0:  # no response: the error says why (never the signed URL)
        error = getattr(resp, "error", None)
        return f"{type(error).__name__}: {error}" if error is not None else "no response"
    if resp.status_code not in ok:
        return f"status {resp.status_code}"
    return None
