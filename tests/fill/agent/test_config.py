"""The fill agent's configuration (fill/agent/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet import config as cfgload
from edgefleet.config import ConfigError
from fill.agent import config as agentconfig
from fill.agent.config import FillAgentConfig

EXAMPLE = Path(__file__).parents[3] / "examples" / "fill.toml"


def test_example_lists_every_key_with_its_default() -> None:
    assert cfgload.load(FillAgentConfig, EXAMPLE) == FillAgentConfig()
    text = EXAMPLE.read_text()
    for key in FillAgentConfig.__dataclass_fields__:
        assert f"\n{key} = " in text, key


def write_edge(tmp_path: Path, control: str = "") -> Path:
    (tmp_path / "keys.toml").write_text('current = "k"\n[keys]\nk = "' + "ab" * 32 + '"\n')
    edge = tmp_path / "edge.toml"
    edge.write_text(f'index = "idx"\ndisks = ["d0"]\n[tokens]\nkeyring = "keys.toml"\n{control}')
    return edge


def test_control_link_and_paths_come_from_the_edge_config(tmp_path: Path) -> None:
    write_edge(
        tmp_path,
        '[control]\nurl = "http://ctl:1/"\nappliance = "ams1-a"\nsecret_file = "fleet.secret"\n',
    )
    fill = tmp_path / "fill.toml"
    fill.write_text('edge_config = "edge.toml"\n')
    s = agentconfig.load(fill)
    assert s.appliance == "ams1-a"
    assert s.control_url == "http://ctl:1"
    assert s.secret_file == str(tmp_path / "fleet.secret")
    assert s.edge.index == str(tmp_path / "idx")
    fill.write_text('edge_config = "edge.toml"\nappliance = "other"\nsecret_file = "s"\n')
    s = agentconfig.load(fill)
    assert (s.appliance, s.secret_file) == ("other", str(tmp_path / "s"))


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('window_start = "25:00"', "window_start"),
        ("window_length_s = 0", "window_length_s"),
        ("rate_cap_bytes_per_s = -1", "rate_cap_bytes_per_s"),
        ("parallel_downloads = 0", "parallel_downloads"),
        ("source_timeout_s = 0", "source_timeout_s"),
        ("delete_grace_s = -5", "delete_grace_s"),
        ('appliance = "bad name"', "appliance"),
        ("rate_cap_bps = 5", "rate_cap_bps"),
        ('parallel_downloads = "4"', "parallel_downloads"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, line: str, named: str) -> None:
    write_edge(tmp_path)
    fill = tmp_path / "fill.toml"
    head = 'edge_config = "edge.toml"\n' + ("" if "appliance" in line else 'appliance = "a"\n')
    fill.write_text(f"{head}{line}\n")
    with pytest.raises(ConfigError, match=named):
        agentconfig.load(fill)


def test_appliance_is_required_somewhere(tmp_path: Path) -> None:
    write_edge(tmp_path)
    fill = tmp_path / "fill.toml"
    fill.write_text('edge_config = "edge.toml"\n')
    with pytest.raises(ConfigError, match="'appliance' is required"):
        agentconfig.load(fill)


def test_check_config_command(tmp_path: Path) -> None:
    """`edgefleet fill check-config`: ok and exit 0, or the bad key with its line and exit 2."""
    import subprocess
    import sys

    write_edge(
        tmp_path, '[control]\nurl = "http://ctl:1"\nappliance = "ams1-a"\nsecret_file = "s"\n'
    )
    fill = tmp_path / "fill.toml"
    fill.write_text('edge_config = "edge.toml"\n')
    cmd = [sys.executable, "-m", "edgefleet.cli", "fill", "check-config", str(fill)]
    good = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert good.returncode == 0, good.stderr
    assert "ok (appliance ams1-a" in good.stdout
    fill.write_text('edge_config = "edge.toml"\n\nparallel_downloads = "4"\n')
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert f"{fill}:3: 'parallel_downloads' must be int" in bad.stderr
