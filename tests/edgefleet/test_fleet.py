"""The fleet's shared vocabulary: the secret file, role tokens, bearer headers, FieldError."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.fleet import MIN_SECRET_BYTES, AuthError, FieldError, bearer, load_secret, role_token


def test_load_secret_names_the_file_and_the_problem(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("ab" * MIN_SECRET_BYTES + "\n")
    assert load_secret(good) == b"\xab" * MIN_SECRET_BYTES
    cases = {
        "short": ("ab" * (MIN_SECRET_BYTES - 1), "at least 32 bytes"),
        "nothex": ("zz" * MIN_SECRET_BYTES, "must be hex"),
    }
    for name, (text, problem) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(AuthError, match=problem) as err:
            load_secret(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name))
        assert text not in str(err.value)  # the secret never appears in an error
    with pytest.raises(AuthError, match="No such file"):
        load_secret(tmp_path / "missing")


def test_role_tokens_differ_by_role_and_secret() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert role_token(a, "steering") == role_token(a, "steering")
    assert role_token(a, "steering") != role_token(a, "admin") != role_token(b, "admin")
    assert len(role_token(a, "appliance:x")) == 64


def test_bearer() -> None:
    assert bearer({"Authorization": "Bearer abc "}) == "abc"
    assert bearer({"Authorization": "bearer abc"}) == "abc"
    for value in ("", "Bearer", "Bearer  ", "Basic abc"):
        assert bearer({"Authorization": value}) is None
    assert bearer({}) is None


def test_field_error_names_the_field() -> None:
    err = FieldError("health.cpu", "must be a finite number")
    assert (err.field, str(err)) == ("health.cpu", "health.cpu: must be a finite number")
    bare = FieldError("software", "must be a string", prefix_field=False)
    assert (bare.field, str(bare)) == ("software", "must be a string")
    assert isinstance(err, ValueError)
