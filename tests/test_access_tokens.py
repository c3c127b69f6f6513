"""Scoped tokens without a server: globs, the token file (hashes only), and `hoodydb token`."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoodydb.access import store, verifier
from hoodydb.access.scope import Scope, check_glob
from hoodydb.api.openapi import document
from hoodydb.cli.token import parse_duration


@pytest.mark.parametrize(
    ("glob", "name", "allowed"),
    [
        ("reports/*", "reports/q1.db", True),
        ("reports/*", "reports/sub/q1.db", False),
        ("reports/**", "reports/sub/q1.db", True),
        ("reports/*", "reports.db", False),
        ("reports/*", "other/reports/q1.db", False),
        ("reports/*", "reports%2Fq1.db", False),
        ("*.db", "a.db", True),
        ("*.db", "x/a.db", False),
        ("a?.db", "ab.db", True),
        ("a?.db", "a/.db", False),
        ("app.db", "app.db", True),
        ("app.db", "appXdb", False),  # '.' is literal
        ("[ab].db", "a.db", False),  # no character classes: literal
    ],
)
def test_database_globs(glob: str, name: str, allowed: bool) -> None:
    assert Scope(name="t", databases=(glob,)).allows_database(name) is allowed


def test_no_glob_means_every_database() -> None:
    assert Scope(name="t").allows_database("any/where.db")


@pytest.mark.parametrize("glob", ["", "/abs/*.db", "../x.db", "reports/../x.db"])
def test_unusable_globs_are_refused(glob: str) -> None:
    with pytest.raises(ValueError):
        check_glob(glob)


def test_only_the_hash_is_stored_and_it_verifies(tmp_path: Path) -> None:
    token = store.create_token(
        tmp_path, name="dash", read_only=True, databases=["r/*"], kv_only=False, expires_at=None, now=1.0
    )
    token_id, secret = store.split_token(token) or ("", "")
    text = store.tokens_path(tmp_path).read_text()
    assert secret not in text and token not in text
    assert stat.S_IMODE(store.tokens_path(tmp_path).stat().st_mode) == 0o600
    [record] = store.load_records(store.tokens_path(tmp_path))
    assert record.id == token_id and record.read_only and record.databases == ("r/*",)
    assert store.verify_secret(secret, record.hash)
    assert not store.verify_secret(secret + "x", record.hash)
    assert not store.verify_secret(secret, record.hash.replace("scrypt", "md5"))


def test_wrong_secrets_for_one_id_are_throttled_without_locking_out_the_right_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each wrong secret costs an scrypt run: past the window's allowance they are refused
    unchecked until the window ends. A secret already verified still passes, and other ids are
    not affected."""
    made = [
        store.create_token(
            tmp_path, name=n, read_only=False, databases=[], kv_only=False, expires_at=None, now=1.0
        )
        for n in ("app", "other")
    ]
    app, other = made
    now = [100.0]
    checks = []
    real_verify = store.verify_secret

    def counted(secret: str, stored: str) -> bool:
        checks.append(secret)
        return real_verify(secret, stored)

    monkeypatch.setattr(store, "verify_secret", counted)
    v = verifier.TokenVerifier([], tmp_path, clock=lambda: now[0])
    wrong = app.rsplit("_", 1)[0] + "_not-the-secret"

    async def check(token: str) -> Scope | verifier.Refusal:
        return await v.check(token.encode())

    async def run() -> None:
        assert isinstance(await check(app), Scope)  # verified, and remembered
        for _ in range(verifier.WRONG_SECRETS_PER_WINDOW):
            assert (await check(wrong)) == verifier.Refusal(verifier.UNKNOWN, "invalid bearer token")
        assert len(checks) == 1 + verifier.WRONG_SECRETS_PER_WINDOW
        now[0] += 15
        refused = await check(wrong)
        assert isinstance(refused, verifier.Refusal) and refused.reason == verifier.THROTTLED
        assert refused.retry_after == verifier.WRONG_SECRET_WINDOW_S - 15
        assert len(checks) == 1 + verifier.WRONG_SECRETS_PER_WINDOW  # no scrypt run for it
        assert isinstance(await check(app), Scope)  # the right one was verified before
        assert isinstance(await check(other), Scope)  # another id is checked as usual
        now[0] += verifier.WRONG_SECRET_WINDOW_S
        assert (await check(wrong)).reason == verifier.UNKNOWN  # type: ignore[union-attr]

    asyncio.run(run())
    assert len(checks) == 3 + verifier.WRONG_SECRETS_PER_WINDOW


@pytest.mark.parametrize("token", ["", "hdb", "hdb__x", "hdb_XYZ_secret", "abc_0123456789abcdef_s", "x"])
def test_foreign_tokens_do_not_parse(token: str) -> None:
    assert store.split_token(token) is None


def test_names_are_unique_among_live_tokens(tmp_path: Path) -> None:
    kwargs = {"read_only": False, "databases": (), "kv_only": False, "expires_at": None, "now": 1.0}
    store.create_token(tmp_path, name="svc", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already exists"):
        store.create_token(tmp_path, name="svc", **kwargs)  # type: ignore[arg-type]
    assert store.revoke_token(tmp_path, "svc", now=2.0)
    assert not store.revoke_token(tmp_path, "svc", now=3.0)
    store.create_token(tmp_path, name="svc", **kwargs)  # type: ignore[arg-type]
    records = store.load_records(store.tokens_path(tmp_path))
    assert [r.revoked_at for r in records] == [2.0, None]
    with pytest.raises(ValueError):
        store.create_token(tmp_path, name="bad name!", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def hoodydb_token(*args: str) -> subprocess.CompletedProcess[str]:
    # A real process: invoking the click group in this one would change how it renders its help
    # for docs/gen_cli.py (the -h alias is cached on first use).
    return subprocess.run([sys.executable, "-m", "hoodydb", "token", *args], capture_output=True, text=True)


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    data = str(tmp_path)
    created = hoodydb_token(
        "create", "--data", data, "--name", "rep", "--read-only", "--db", "reports/*", "--expires", "7d"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    parts = store.split_token(token)
    assert parts is not None
    token_id, secret = parts  # (the secret may hold "_" itself: it is URL-safe base64)
    store.merge_last_use(tmp_path, {token_id: time.time()})
    listed = hoodydb_token("list", "--data", data)
    assert listed.returncode == 0
    line = listed.stdout.strip()
    assert line.startswith("rep\tread-only; sql+kv; db: reports/*\texpires 20")
    assert "last used never" not in line and secret not in listed.stdout
    assert hoodydb_token("revoke", "--data", data, "rep").returncode == 0
    assert "\trevoked " in hoodydb_token("list", "--data", data).stdout
    again = hoodydb_token("revoke", "--data", data, "rep")
    assert again.returncode == 1 and "no live token" in again.stderr
    refused = hoodydb_token("create", "--data", data, "--name", "x", "--db", "/etc/*")
    assert refused.returncode == 1 and "relative" in refused.stderr
    assert len(json.loads(store.tokens_path(tmp_path).read_text())["tokens"]) == 1


def test_the_openapi_document_lists_403_on_every_api_route() -> None:
    paths = document()["paths"]
    operations = [(p, m, op) for p, ops in paths.items() if p.startswith("/api/") for m, op in ops.items()]
    assert len(operations) >= 9
    for path, method, op in operations:
        assert "403" in op["responses"] and "401" in op["responses"], (path, method)
    assert "scope" in document()["components"]["schemas"]["Error"]["properties"]
