"""Logs: text by default, one JSON object a line with EDGEFLEET_LOG_FORMAT=json, bad values refused."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from edgefleet.logs import JsonFormatter, LogSetupError, settings
from tests.edge.edgeproc import EdgeProcess
from tests.edge.probes import wait_until


def test_settings_default_to_text_at_info() -> None:
    assert settings({}) == ("text", logging.INFO)
    assert settings({"EDGEFLEET_LOG_FORMAT": "JSON", "EDGEFLEET_LOG_LEVEL": "debug"}) == (
        "json",
        logging.DEBUG,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EDGEFLEET_LOG_FORMAT": "xml"}, "EDGEFLEET_LOG_FORMAT='xml'"),
        ({"EDGEFLEET_LOG_LEVEL": "loud"}, "EDGEFLEET_LOG_LEVEL='loud'"),
    ],
)
def test_unknown_values_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(LogSetupError, match=named):
        settings(env)


def test_json_record_carries_fields_and_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "edge.worker", logging.ERROR, __file__, 1, "disk %s", ("d0",), sys.exc_info()
        )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "error"
    assert doc["logger"] == "edge.worker"
    assert doc["msg"] == "disk d0"
    assert doc["ts"].endswith("Z")
    assert "ValueError: boom" in doc["exc"]


def test_a_service_logs_json_lines(edge_factory: Callable[..., EdgeProcess]) -> None:
    edge = edge_factory({"a.bin": b"x" * 100}, env={"EDGEFLEET_LOG_FORMAT": "json"})
    edge.signal(signal.SIGHUP)  # the worker logs "keyring reloaded"
    wait_until(lambda: "keyring reloaded" in edge.stderr(), 10, "the reload to be logged")
    lines = [line for line in edge.stderr().splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "pid", "msg"} <= docs[0].keys()


def test_a_bad_log_format_stops_a_service_with_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "steering", "serve", "-c", "/nonexistent.toml"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"EDGEFLEET_LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 2
    assert "EDGEFLEET_LOG_FORMAT='yaml': expected text or json" in out.stderr
