"""The nightly planner's configuration (fill/planner/config.py)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet import config as cfgload
from edgefleet.config import ConfigError
from fill.cli import add_plan_parser
from fill.planner import config as planconfig
from fill.planner.config import OPTION_KEYS, PlannerConfig
from fill.planner.run import PlanOptions

EXAMPLE = Path(__file__).parents[3] / "examples" / "planner.toml"


def plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    return add_plan_parser(parser.add_subparsers())


def test_example_lists_every_key_with_its_default() -> None:
    assert cfgload.load(PlannerConfig, EXAMPLE) == PlannerConfig()
    text = EXAMPLE.read_text()
    for table in dataclasses.fields(PlannerConfig):
        assert f"\n[{table.name}]\n" in text, table.name
        section = text.split(f"\n[{table.name}]\n", 1)[1].split("\n[", 1)[0]
        for key in dataclasses.fields(getattr(PlannerConfig(), table.name)):
            assert f"\n{key.name} = " in section, f"{table.name}.{key.name}"


def test_every_option_has_a_key_and_every_key_an_option() -> None:
    dests = {a.dest for a in plan_parser()._actions} - {"help", "config", "generation"}
    assert dests == set(OPTION_KEYS)
    keys = {
        f"{table.name}.{key.name}"
        for table in dataclasses.fields(PlannerConfig)
        for key in dataclasses.fields(getattr(PlannerConfig(), table.name))
    }
    # output.generation has its own option (--generation): 0 means different things.
    assert keys - set(OPTION_KEYS.values()) == {"output.generation"}
    assert set(OPTION_KEYS.values()) <= keys


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = conf_dir / "planner.toml"
    path.write_text(
        '[inputs]\ncatalog = "cat.csv"\npopularity = ["a.jsonl", "/abs/b.jsonl"]\n'
        '[fleet]\ncontrol_url = "http://127.0.0.1:1"\nsecret_file = "fleet.secret"\n'
        '[output]\nout_dir = "plans"\n'
    )
    conf = planconfig.load(path)
    assert conf.inputs.catalog == str(conf_dir / "cat.csv")
    assert conf.inputs.popularity == (str(conf_dir / "a.jsonl"), "/abs/b.jsonl")
    assert conf.fleet.secret_file == str(conf_dir / "fleet.secret")
    assert conf.output.out_dir == str(conf_dir / "plans")
    assert conf.inputs.catalog_index == "" and conf.fleet.document == ""


def test_options_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "planner.toml"
    path.write_text(
        '[inputs]\ncatalog = "cat.csv"\npopularity = ["a.jsonl"]\n'
        '[fleet]\ncontrol_url = "http://127.0.0.1:1"\n'
        "[output]\npublish = true\ngeneration = 7\n"
        "[model]\nhysteresis = 1.5\nmax_sources = 3\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = plan_parser().parse_args(
        [
            "--catalog-index",
            "idx",
            "--popularity",
            "x.csv",
            "y.csv",
            "--fleet",
            "fleet.json",
            "--no-publish",
            "--hysteresis",
            "2",
            "--generation",
            "0",
        ]
    )
    conf = planconfig.load(path, vars(args))
    # Command-line paths are the working directory's; their partners in the file are cleared.
    assert conf.inputs.catalog_index == str(work / "idx")
    assert conf.inputs.catalog == ""
    assert conf.inputs.popularity == (str(work / "x.csv"), str(work / "y.csv"))
    assert (conf.fleet.document, conf.fleet.control_url) == (str(work / "fleet.json"), "")
    assert conf.output.publish is False
    assert conf.model.hysteresis == 2.0 and conf.model.max_sources == 3
    opts = planconfig.plan_options(conf, args.generation)
    assert opts.generation == 0  # the command line's 0 is 0, not "now"
    assert planconfig.plan_options(conf).generation == 7


def test_optional_values_map_to_none() -> None:
    opts = planconfig.plan_options(PlannerConfig())
    assert opts == PlanOptions()
    assert opts.max_copies is None and opts.generation is None and opts.catalog is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nhysterisis = 1.2\n", "planner.toml:2: unknown key 'model.hysterisis'"),
        ("[inputs]\n\ncatalog = 3\n", "planner.toml:3: 'inputs.catalog' must be str"),
        ('[model]\nmin_copies = "2"\n', "planner.toml:2: 'model.min_copies' must be int"),
        ("[model]\nmax_sources = true\n", "planner.toml:2: 'model.max_sources' must be an int"),
        ("[model]\nhysteresis = 0.9\n", "planner.toml:2: 'model.hysteresis' must be a number"),
        ("[model]\nfill_window_hours = 25\n", "planner.toml:2: 'model.fill_window_hours'"),
        ("[model]\nreserve_fraction = 1.0\n", "planner.toml:2: 'model.reserve_fraction'"),
        ("[model]\nmin_copies = 3\nmax_copies = 2\n", "planner.toml:3: 'model.max_copies'"),
        ("[model]\npopularity_per_copy = -inf\n", "planner.toml:2: 'model.popularity_per_co"),
        ("[model]\nfill_rate_bps = nan\n", "planner.toml:2: 'model.fill_rate_bps'"),
        ("[output]\ngeneration = -1\n", "planner.toml:2: 'output.generation' must be >= 0"),
        ('[inputs]\npopularity = "a.csv"\n', "planner.toml:2: 'inputs.popularity' must be a l"),
        ('[inputs]\ncatalog = "a"\ncatalog_index = "b"\n', ":3: 'inputs.catalog_index': give"),
        ('[fleet]\ncontrol_url = "control:7070"\n', ":2: 'fleet.control_url' must be an http"),
        ("[fleets]\ndocument = 'f.json'\n", "planner.toml:1: unknown key 'fleets'"),
        ("catalog = 'c.csv'\n", "planner.toml:1: unknown key 'catalog'"),
    ],
)
def test_bad_keys_are_named_with_their_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "planner.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        planconfig.load(path)
    assert message in str(caught.value)


def test_a_bad_option_is_named_as_the_option(tmp_path: Path) -> None:
    path = tmp_path / "planner.toml"
    path.write_text("[model]\nhysteresis = 1.5\n")
    args = plan_parser().parse_args(["--hysteresis", "0.5"])
    with pytest.raises(ConfigError, match=r"^--hysteresis: 'model.hysteresis' must be"):
        planconfig.load(path, vars(args))
    with pytest.raises(ConfigError, match=r"^--max-sources: 'model.max_sources' must be >= 1"):
        planconfig.load(None, vars(plan_parser().parse_args(["--max-sources", "0"])))


def test_a_missing_or_unparsable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        planconfig.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        planconfig.load(bad)


paths = st.text("abcxyz/._-", min_size=1, max_size=12).filter(lambda p: not p.startswith("-"))
OPTION_VALUES: dict[str, Any] = {
    "catalog": paths,
    "catalog_index": paths,
    "popularity": st.lists(paths, min_size=1, max_size=3),
    "popularity_from_control": st.booleans(),
    "fleet": paths,
    "control": st.sampled_from(["http://127.0.0.1:7070", "https://control"]),
    "secret_file": paths,
    "out": paths,
    "publish": st.booleans(),
    "generation": st.integers(0, 2**40),
    "fill_rate_bps": st.floats(1, 1e12),
    "fill_window_hours": st.floats(0.01, 24),
    "reserve_fraction": st.floats(0, 0.99),
    "half_life_days": st.floats(0.01, 100),
    "prior_median_fraction": st.floats(0, 10),
    "min_copies": st.integers(1, 3),
    "max_copies": st.integers(3, 10),
    "popularity_per_copy": st.floats(1e-3, 1e9) | st.just(math.inf),
    "hysteresis": st.floats(1, 10),
    "max_sources": st.integers(1, 64),
}


@given(st.fixed_dictionaries({}, optional=OPTION_VALUES))
def test_without_a_file_the_options_are_taken_as_given(options: dict[str, Any]) -> None:
    """No --config: the options pass through unchanged (paths not resolved), defaults else;
    both of two alternatives is an error naming the option."""
    if {"catalog", "catalog_index"} <= set(options) or {"fleet", "control"} <= set(options):
        with pytest.raises(ConfigError, match=r"^--(catalog-index|control): .*not both"):
            planconfig.load(None, options)
        return
    conf = planconfig.load(None, options)
    opts = planconfig.plan_options(conf, options.get("generation"))
    if "popularity" in options:
        options["popularity"] = tuple(options["popularity"])
    assert opts == dataclasses.replace(PlanOptions(), **options)


def test_a_given_relative_path_is_kept_without_a_file() -> None:
    conf = planconfig.load(None, {"catalog": "rel/cat.csv"})
    assert conf.inputs.catalog == "rel/cat.csv" and not os.path.isabs(conf.inputs.catalog)


def test_parsing_fill_options_does_not_import_the_planner() -> None:
    """`fill run` shares fill/cli.py's parser: numpy (and its BLAS threads and system calls,
    outside the agent unit's filter) must stay out until `fill plan` runs."""
    import subprocess
    import sys

    code = "import sys, fill.cli; fill.cli._parser(); assert 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
