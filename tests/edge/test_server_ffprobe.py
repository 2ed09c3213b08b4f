"""A real media client against a live edge: ffprobe and ffmpeg read an MP4 whose index (the
moov atom) sits at the end of the file, which they can only reach with range requests."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.edgeproc import EdgeProcess, request
from tests.edge.probes import scrape, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None,
        reason="ffprobe/ffmpeg not installed",
    ),
]
DURATION_S = 3


def _video_codec() -> str:
    encoders = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return "libx264" if " libx264 " in encoders else "mpeg4"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 3 s 320x240 MP4 with video and audio, moov atom at the end (no +faststart)."""
    out = tmp_path_factory.mktemp("media") / "clip.mp4"
    codec = _video_codec()
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-nostdin",
            "-f", "lavfi", "-i", f"testsrc=duration={DURATION_S}:size=320x240:rate=25",
            "-f", "lavfi", "-i", f"sine=duration={DURATION_S}",
            "-c:v", codec, *(["-preset", "ultrafast"] if codec == "libx264" else []),
            "-c:a", "aac", "-shortest", str(out),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    data = out.read_bytes()
    assert data.rfind(b"moov") > data.find(b"mdat") > 0  # the index really is at the end
    return data


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, video: bytes) -> Iterator[EdgeProcess]:
    root = tmp_path_factory.mktemp("edge")
    proc = EdgeProcess(
        root, {"clip.mp4": video}, extra_config=f'access_log = "{root / "access.log"}"'
    ).start()
    yield proc
    assert proc.stop() == 0


def http_url(edge: EdgeProcess) -> str:
    return f"http://127.0.0.1:{edge.port}{edge.url('clip.mp4')}"


def test_served_with_the_right_type(edge: EdgeProcess, video: bytes) -> None:
    status, headers, _ = request(edge.port, edge.url("clip.mp4"), method="HEAD")
    assert status == 200
    assert headers["content-type"] == "video/mp4"
    assert int(headers["content-length"]) == len(video)


def test_ffprobe_reads_format_and_streams(edge: EdgeProcess) -> None:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", http_url(edge)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    info = json.loads(result.stdout)
    assert float(info["format"]["duration"]) == pytest.approx(DURATION_S, abs=0.2)
    kinds = sorted(s["codec_type"] for s in info["streams"])
    assert kinds == ["audio", "video"]
    video_stream = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video_stream["width"], video_stream["height"]) == (320, 240)


def test_ffmpeg_seeks_and_decodes(edge: EdgeProcess) -> None:
    before = scrape(edge.port).get('edgefleet_edge_requests_total{code="206"}', 0)
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-ss", "2", "-i", http_url(edge),
         "-frames:v", "1", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Reaching the moov atom at the end and seeking to 2 s takes range requests.
    after = scrape(edge.port)['edgefleet_edge_requests_total{code="206"}']
    assert after >= before + 2
    # A player that seeks closes the connection of the range it no longer wants: a
    # `client_gone` is normal (how many depends on timing); any other error kind is not.
    errors = [k for k in scrape(edge.port) if k.startswith("edgefleet_edge_errors_total")]
    assert [k for k in errors if 'kind="client_gone"' not in k] == [], errors


def test_access_log_shows_the_range_requests(edge: EdgeProcess, video: bytes) -> None:
    subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", http_url(edge)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    log = Path(edge.root / "access.log")

    def ranged_lines() -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [line for line in text.splitlines() if '" 206 ' in line]

    lines = wait_until(ranged_lines, 5, "206 lines in the access log")
    assert all("GET /c/clip.mp4?" in line and "Lavf/" in line for line in lines)
    # At least one range started past the first byte: a real seek, not `bytes=0-`.
    sizes = [int(line.split('" 206 ')[1].split()[0]) for line in lines]
    assert min(sizes) < len(video)
