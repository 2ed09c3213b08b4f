"""Fill manifests: what one appliance should hold after tonight's fill, and where to get it.

The planner (`edgefleet fill plan`) writes one manifest per appliance and publishes them to
control in one document; control stores them (SQLite) and serves each appliance its newest one,
adding where each named source can be reached right now; the appliance's fill agent
(`edgefleet fill run`) diffs it with its index. See docs/fleet-api.md.

    published (planner → control, PUT /v1/manifests, admin):
        {"generation": 17, "manifests": [<manifest>, ...]}
    or, for a large fleet, one appliance at a time (PUT /v1/appliances/{name}/manifest, admin):
        <manifest>
    <manifest>:
        {"appliance": "ams1-a", "generation": 17, "created_at": 1795561724.5,
         "files": [{"id": "a.mp4", "size": 123, "checksum": "<32 hex>",
                    "sources": ["ams1-b", "lon1-a", "origin-1"]}, ...]}
    served (control → appliance, GET /v1/appliances/{name}/manifest):
        <manifest> + {"source_urls": {"ams1-b": "http://…", ...},
                      "source_states": {"ams1-b": "up", ...}}

`files` is the whole set the appliance should hold, most valuable first (the agent downloads
in that order, so a fill cut short by its window has fetched what matters most). Files the
appliance holds that are not listed are deletes; listed files it lacks are adds. `sources`
ranks where a file can be fetched: site peers that will hold it, then other appliances of the
tier, then origin appliances. A manifest never lists the appliance itself as a source.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.fleet import FieldError
from edgefleet.models import CONTENT_ID_RE, is_content_id

CHECKSUM_RE = re.compile(r"[0-9a-f]{32}")
# Appliance names (control/topology.py NAME_RE): plain, they appear in URL paths.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CONTENT_ID_CHECK = CONTENT_ID_RE.fullmatch  # is_content_id, without a call per file


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One file an appliance should hold."""

    content_id: str
    size: int
    checksum: str  # xxh3-128, 32 lowercase hex digits (the edge index's checksum)
    sources: tuple[str, ...] = ()  # appliance names, best first


@dataclass(frozen=True, slots=True)
class FillManifest:
    """The planner's answer for one appliance."""

    appliance: str
    generation: int
    created_at: float
    files: tuple[ManifestFile, ...]  # most valuable first
    # Filled in by control when it serves the manifest: how to reach each source now.
    source_urls: dict[str, str] = field(default_factory=dict)
    source_states: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Bytes the appliance holds once the manifest is complete."""
        return sum(f.size for f in self.files)

    def source_names(self) -> set[str]:
        """Every appliance named as a source by some file."""
        return {s for f in self.files for s in f.sources}


def manifest_to_doc(manifest: FillManifest, *, served: bool = False) -> dict[str, Any]:
    """A manifest as its JSON document (with the source URLs and states when *served*)."""
    doc: dict[str, Any] = {
        "appliance": manifest.appliance,
        "generation": manifest.generation,
        "created_at": manifest.created_at,
        "files": [
            {"id": f.content_id, "size": f.size, "checksum": f.checksum, "sources": list(f.sources)}
            for f in manifest.files
        ],
    }
    if served:
        doc["source_urls"] = dict(manifest.source_urls)
        doc["source_states"] = dict(manifest.source_states)
    return doc


def _int(doc: dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FieldError(f"{where}{key}", "must be an integer >= 0")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise FieldError(where, "must be an appliance name")
    return value


def parse_manifest(doc: Any, where: str = "") -> FillManifest:
    """Check and convert one manifest document; FieldError names the first bad field."""
    if not isinstance(doc, dict):
        raise FieldError(where or "$", "must be a JSON object")
    appliance = _name(doc.get("appliance"), f"{where}appliance")
    generation = _int(doc, "generation", where)
    created = doc.get("created_at", 0.0)
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise FieldError(f"{where}created_at", "must be a number")
    if not math.isfinite(created):
        raise FieldError(f"{where}created_at", "must be a finite number")
    raw_files = doc.get("files")
    if not isinstance(raw_files, list):
        raise FieldError(f"{where}files", "must be a list")
    files: list[ManifestFile] = []
    seen: set[str] = set()
    for i, f in enumerate(raw_files):
        at = f"{where}files[{i}]."
        if not isinstance(f, dict):
            raise FieldError(at[:-1], "must be an object")
        cid = f.get("id")
        if not isinstance(cid, str) or not is_content_id(cid):
            raise FieldError(f"{at}id", "must be a content id")
        if cid in seen:
            raise FieldError(f"{at}id", f"{cid!r} is listed twice")
        seen.add(cid)
        checksum = f.get("checksum")
        if not isinstance(checksum, str) or CHECKSUM_RE.fullmatch(checksum) is None:
            raise FieldError(f"{at}checksum", "must be 32 lowercase hex digits (xxh3-128)")
        sources = f.get("sources", [])
        if not isinstance(sources, list):
            raise FieldError(f"{at}sources", "must be a list of appliance names")
        names = tuple(_name(s, f"{at}sources[{j}]") for j, s in enumerate(sources))
        if appliance in names:
            raise FieldError(f"{at}sources", "an appliance cannot be its own source")
        files.append(ManifestFile(cid, _int(f, "size", at), checksum, names))
    urls = doc.get("source_urls", {})
    states = doc.get("source_states", {})
    if not isinstance(urls, dict) or not all(isinstance(v, str) for v in urls.values()):
        raise FieldError(f"{where}source_urls", "must map appliance names to URLs")
    if not isinstance(states, dict) or not all(isinstance(v, str) for v in states.values()):
        raise FieldError(f"{where}source_states", "must map appliance names to states")
    return FillManifest(appliance, generation, float(created), tuple(files), urls, states)


def publication_to_doc(generation: int, manifests: Iterable[FillManifest]) -> dict[str, Any]:
    """The document the planner PUTs to control: one generation, every appliance's manifest."""
    return {"generation": generation, "manifests": [manifest_to_doc(m) for m in manifests]}


def parse_publication(doc: Any) -> tuple[int, list[FillManifest]]:
    """Check a published document: one generation shared by all, each appliance once."""
    if not isinstance(doc, dict):
        raise FieldError("$", "must be a JSON object")
    generation = _int(doc, "generation", "")
    raw = doc.get("manifests")
    if not isinstance(raw, list):
        raise FieldError("manifests", "must be a list")
    manifests: list[FillManifest] = []
    names: set[str] = set()
    for i, m in enumerate(raw):
        manifest = parse_manifest(m, f"manifests[{i}].")
        if manifest.generation != generation:
            raise FieldError(f"manifests[{i}].generation", f"must equal generation {generation}")
        if manifest.appliance in names:
            raise FieldError(f"manifests[{i}].appliance", f"{manifest.appliance!r} listed twice")
        names.add(manifest.appliance)
        manifests.append(manifest)
    return generation, manifests


def canonical_manifest(doc: Any, where: str = "") -> tuple[FillManifest, str, frozenset[str]]:
    """Check one manifest document as `parse_manifest` does, without an object per file.

    Returns the manifest *without its files* (appliance, generation, created_at), the
    document's canonical JSON text (`manifest_to_doc` of the parsed manifest, compact) and the
    source names it uses. Control stores manifests of a million files: this makes one pass of
    plain dict and set operations per file; whenever it meets something it does not accept,
    `parse_manifest` runs on the document to raise the exact FieldError.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        parse_manifest(doc, where)
    head = parse_manifest({**doc, "files": []}, where)  # every field but the files
    names_ok: set[str] = set()
    seen: set[str] = set()
    files: list[dict[str, Any]] = []
    content_id, checksum_re, name_re = CONTENT_ID_CHECK, CHECKSUM_RE.fullmatch, NAME_RE.fullmatch
    for f in doc["files"]:
        if not isinstance(f, dict):
            break
        cid, size, checksum = f.get("id"), f.get("size"), f.get("checksum")
        sources = f.get("sources", [])
        if (
            not isinstance(cid, str)
            or content_id(cid) is None
            or cid in seen
            or not isinstance(checksum, str)
            or checksum_re(checksum) is None
            or type(size) is not int
            or size < 0
            or not isinstance(sources, list)
        ):
            break
        for s in sources:
            if s not in names_ok:
                if not isinstance(s, str) or name_re(s) is None or s == head.appliance:
                    break
                names_ok.add(s)
        else:
            seen.add(cid)
            files.append({"id": cid, "size": size, "checksum": checksum, "sources": sources})
            continue
        break
    else:
        canonical = manifest_to_doc(head)
        canonical["files"] = files
        text = json.dumps(canonical, separators=(",", ":"))
        return head, text, frozenset(names_ok)
    parse_manifest(doc, where)  # raises the FieldError naming the field
    raise AssertionError("canonical_manifest refused a document parse_manifest accepts")
