"""The API reference page is generated from the OpenAPI document and kept in step with it."""

from __future__ import annotations

import copy

from steering.apidoc import DOC, load_spec, main, render


def test_the_committed_page_matches_the_spec() -> None:
    assert main(["--check"]) == 0, "run: python -m steering.apidoc"
    assert DOC.read_text() == render(load_spec())


def test_every_endpoint_and_schema_is_documented() -> None:
    spec = load_spec()
    page = render(spec)
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"### `{method.upper()} {path}`" in page
    for name in spec["components"]["schemas"]:
        assert f"### {name}" in page
    assert "| `max_urls` | query | integer | no | ≥ 1; ≤ 20; default 3 |" in page


def test_a_change_to_the_spec_changes_the_page() -> None:
    spec = copy.deepcopy(load_spec())
    spec["components"]["schemas"]["SteerRequest"]["properties"]["max_urls"]["maximum"] = 50
    assert "≤ 50" in render(spec)
    assert render(spec) != render(load_spec())
