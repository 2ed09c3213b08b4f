"""The nightly planner's configuration: one frozen object, loaded from TOML once at start-up.

`edgefleet fill plan --config planner.toml` reads its inputs, fleet link, outputs and model
knobs from four tables; every command-line option of `fill plan` has a key here
(`OPTION_KEYS`), and an option given on the command line overrides the file. Relative paths in
the file are relative to the file's directory; paths on the command line to the working
directory, as any command's. Empty strings and 0 where a value is optional mean "not set", since
TOML has no null.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet import config as cfgload

if TYPE_CHECKING:  # run.py pulls in numpy: `fill run` parses its options without it
    from fill.planner.run import PlanOptions


@dataclass(frozen=True)
class Inputs:
    """What is planned for: the catalog and the popularity records."""

    catalog: str = ""  # records file (.csv or .jsonl)
    catalog_index: str = ""  # or an origin appliance's LMDB index directory
    popularity: tuple[str, ...] = ()  # record files
    popularity_from_control: bool = False  # GET /v1/popularity from fleet.control_url

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if self.catalog and self.catalog_index:
            raise ValueError("'inputs.catalog_index': give inputs.catalog or this, not both")
        if any(not p for p in self.popularity):
            raise ValueError("'inputs.popularity' must not list an empty path")


@dataclass(frozen=True)
class FleetLink:
    """Where the fleet (sites, appliances, capacities, inventories) comes from."""

    document: str = ""  # a saved GET /v1/fleet document (offline planning)
    control_url: str = ""  # or control's base URL
    secret_file: str = ""  # the fleet secret, for control's admin token

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if self.document and self.control_url:
            raise ValueError("'fleet.control_url': give fleet.document or this, not both")
        if self.control_url and not self.control_url.startswith(("http://", "https://")):
            raise ValueError("'fleet.control_url' must be an http:// or https:// URL")


@dataclass(frozen=True)
class Output:
    """Where the plan goes."""

    out_dir: str = ""  # report.json and manifests/<appliance>.json
    publish: bool = False  # PUT the manifests to control
    # 0: the unix time of the run, so each night's generation is above the last one's.
    generation: int = 0

    def validate(self) -> None:
        """Reject values that cannot work, naming the key."""
        if self.generation < 0:
            raise ValueError("'output.generation' must be >= 0 (0: the unix time)")


@dataclass(frozen=True)
class Model:
    """The forecast and placement knobs."""

    fill_rate_bps: float = 1.2e9  # bits/s one appliance fills at
    fill_window_hours: float = 12.0
    reserve_fraction: float = 0.0  # of each appliance's capacity, kept free
    half_life_days: float = 3.0
    prior_median_fraction: float = 0.5
    min_copies: int = 1
    max_copies: int = 0  # 0: no cap (the number of appliances)
    popularity_per_copy: float = math.inf
    hysteresis: float = 1.1
    max_sources: int = 8

    def validate(self) -> None:
        """Reject values that cannot work, naming the key (the bounds forecast.py and
        placement.py enforce, checked here so a bad file fails before any input is read)."""
        if not (self.fill_rate_bps > 0 and math.isfinite(self.fill_rate_bps)):
            raise ValueError("'model.fill_rate_bps' must be a number > 0")
        if not 0 < self.fill_window_hours <= 24:
            raise ValueError("'model.fill_window_hours' must be in (0, 24]")
        if not 0 <= self.reserve_fraction < 1:
            raise ValueError("'model.reserve_fraction' must be in [0, 1)")
        if not (self.half_life_days > 0 and math.isfinite(self.half_life_days)):
            raise ValueError("'model.half_life_days' must be a number > 0")
        if not (self.prior_median_fraction >= 0 and math.isfinite(self.prior_median_fraction)):
            raise ValueError("'model.prior_median_fraction' must be a number >= 0")
        if self.min_copies < 1:
            raise ValueError("'model.min_copies' must be >= 1")
        if self.max_copies < 0 or 0 < self.max_copies < self.min_copies:
            raise ValueError("'model.max_copies' must be 0 (no cap) or >= model.min_copies")
        if not self.popularity_per_copy > 0:
            raise ValueError("'model.popularity_per_copy' must be > 0 (inf: no split)")
        if not (self.hysteresis >= 1 and math.isfinite(self.hysteresis)):
            raise ValueError("'model.hysteresis' must be a number >= 1")
        if self.max_sources < 1:
            raise ValueError("'model.max_sources' must be >= 1")


@dataclass(frozen=True)
class PlannerConfig:
    """Everything `edgefleet fill plan` needs."""

    inputs: Inputs = Inputs()
    fleet: FleetLink = FleetLink()
    output: Output = Output()
    model: Model = Model()


# Every `fill plan` option (its argparse dest) and its key. `generation` is absent: the
# command line's --generation is taken as given (0 included), the file's 0 means "now".
OPTION_KEYS: dict[str, str] = {
    "catalog": "inputs.catalog",
    "catalog_index": "inputs.catalog_index",
    "popularity": "inputs.popularity",
    "popularity_from_control": "inputs.popularity_from_control",
    "fleet": "fleet.document",
    "control": "fleet.control_url",
    "secret_file": "fleet.secret_file",
    "out": "output.out_dir",
    "publish": "output.publish",
    "fill_rate_bps": "model.fill_rate_bps",
    "fill_window_hours": "model.fill_window_hours",
    "reserve_fraction": "model.reserve_fraction",
    "half_life_days": "model.half_life_days",
    "prior_median_fraction": "model.prior_median_fraction",
    "min_copies": "model.min_copies",
    "max_copies": "model.max_copies",
    "popularity_per_copy": "model.popularity_per_copy",
    "hysteresis": "model.hysteresis",
    "max_sources": "model.max_sources",
}
PATH_OPTIONS = ("catalog", "catalog_index", "fleet", "secret_file", "out")
# Either one or the other: an option given on the command line clears its partner in the file.
PARTNERS = {
    "catalog": "catalog_index",
    "catalog_index": "catalog",
    "fleet": "control",
    "control": "fleet",
}


def load(path: str | Path | None, options: dict[str, Any] | None = None) -> PlannerConfig:
    """Load and validate *path* (None: the defaults) with command-line *options* (argparse
    dests → values, None meaning "not given") overriding it. A bad option is named as such
    (`--hysteresis: 'model.hysteresis' must be ...`), a bad key by its file and line."""
    given = {k: v for k, v in (options or {}).items() if v is not None and k in OPTION_KEYS}
    overrides: dict[str, Any] = {}
    # Command-line paths are made absolute so that resolving the file's relative paths (against
    # the file's directory) leaves them alone.
    absolute = os.path.abspath if path is not None else str
    for dest, value in given.items():
        if dest == "popularity":
            overrides[OPTION_KEYS[dest]] = [absolute(v) for v in value]
        elif dest in PATH_OPTIONS:
            overrides[OPTION_KEYS[dest]] = absolute(value)
        else:
            overrides[OPTION_KEYS[dest]] = value
        partner = PARTNERS.get(dest)
        if partner is not None and partner not in given:
            overrides[OPTION_KEYS[partner]] = ""
    try:
        conf = cfgload.load(PlannerConfig, path, overrides)
    except cfgload.ConfigError as exc:
        option = next((d for d, k in OPTION_KEYS.items() if k == exc.key and k in overrides), None)
        if option is None:
            raise
        body = str(exc).split(": ", 1)[-1]
        raise cfgload.ConfigError(f"--{option.replace('_', '-')}: {body}", exc.key) from None
    fix = cfgload.path_resolver(path)
    i, f, o = conf.inputs, conf.fleet, conf.output
    return replace(
        conf,
        inputs=replace(
            i,
            catalog=fix(i.catalog),
            catalog_index=fix(i.catalog_index),
            popularity=tuple(fix(p) for p in i.popularity),
        ),
        fleet=replace(f, document=fix(f.document), secret_file=fix(f.secret_file)),
        output=replace(o, out_dir=fix(o.out_dir)),
    )


def plan_options(conf: PlannerConfig, generation: int | None = None) -> PlanOptions:
    """The planner's options from *conf*; *generation* (the command line's) beats the file's."""
    from fill.planner.run import PlanOptions

    i, f, o, m = conf.inputs, conf.fleet, conf.output, conf.model
    if generation is None and o.generation:
        generation = o.generation
    return PlanOptions(
        catalog=i.catalog or None,
        catalog_index=i.catalog_index or None,
        popularity=i.popularity,
        popularity_from_control=i.popularity_from_control,
        fleet=f.document or None,
        control=f.control_url or None,
        secret_file=f.secret_file or None,
        out=o.out_dir or None,
        publish=o.publish,
        generation=generation,
        fill_rate_bps=m.fill_rate_bps,
        fill_window_hours=m.fill_window_hours,
        reserve_fraction=m.reserve_fraction,
        half_life_days=m.half_life_days,
        prior_median_fraction=m.prior_median_fraction,
        min_copies=m.min_copies,
        max_copies=m.max_copies or None,
        popularity_per_copy=m.popularity_per_copy,
        hysteresis=m.hysteresis,
        max_sources=m.max_sources,
    )
