"""Bearer-token auth and token sources, through a real `hoodydb serve`."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess

PROTECTED = [
    ("POST", "/api/v1/sqlite/db?db=x.db"),
    ("POST", "/api/v1/sqlite/databases"),
    ("GET", "/api/v1/sqlite/kv?db=x.db"),
    ("GET", "/api/v1/sqlite/kv/k?db=x.db"),
    ("PUT", "/api/v1/sqlite/kv/k?db=x.db"),
    ("DELETE", "/api/v1/sqlite/kv/k?db=x.db"),
    ("GET", "/api/v1/sqlite/token"),
    ("GET", "/api/v1/anything-else"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("authroot")
    with ServeProcess(["--no-mount", "--root", str(root), "--token", "second-token"], root.parent) as server:
        yield server


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdC10b2tlbg=="},
        {"Authorization": "Bearer"},
    ],
)
def test_every_api_route_needs_a_valid_token(
    api: ServeProcess, method: str, path: str, headers: dict[str, str]
) -> None:
    response = httpx.request(method, api.url + path, headers=headers, content=b"{}")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_every_configured_token_works(api: ServeProcess) -> None:
    for token in ["test-token", "second-token"]:
        response = httpx.post(
            api.url + "/api/v1/sqlite/databases",
            headers={"Authorization": f"bearer {token}"},
            json={"path": token},
        )
        assert response.status_code == 201


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json"])
def test_open_routes(api: ServeProcess, path: str) -> None:
    assert httpx.get(api.url + path).status_code == 200


def test_tokens_from_the_environment(tmp_path: Path) -> None:
    env = {"HOODYDB_TOKENS": "env-one, env-two"}
    with ServeProcess(["--no-mount", "--root", str(tmp_path / "r")], tmp_path, token=None, env=env) as server:
        for token, status in [("env-one", 201), ("env-two", 201), ("nope", 401)]:
            response = server.client.post(
                "/api/v1/sqlite/databases", headers=server.auth_headers(token), json={"path": f"{token}.db"}
            )
            assert response.status_code == status
        # Given tokens are never printed: the output often ends up in logs.
        assert "env-one" not in server.stdout() and "tokens: 2 given" in server.stdout()


def test_tokens_from_a_file_stay_out_of_the_command_line(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# API tokens\nfile-one\n\nfile-two\n")
    args = ["--no-mount", "--root", str(tmp_path / "r"), "--token-file", str(token_file)]
    with ServeProcess(args, tmp_path, token=None, env={"HOODYDB_TOKENS": ""}) as server:
        assert server.proc is not None
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert b"file-one" not in cmdline
        for token, status in [("file-one", 201), ("file-two", 201), ("# API tokens", 401)]:
            response = server.client.post(
                "/api/v1/sqlite/databases", headers=server.auth_headers(token), json={"path": f"{token}.db"}
            )
            assert response.status_code == status
        assert "file-one" not in server.stdout() and "tokens: 2 given" in server.stdout()


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# nothing yet\n")
    args = ["--no-mount", "--root", str(tmp_path / "r"), "--token-file", str(token_file)]
    with pytest.raises(RuntimeError, match="holds no token"):
        ServeProcess(args, tmp_path, token=None, env={"HOODYDB_TOKENS": ""}).start()


def test_generated_token_is_stored_private_and_reused(tmp_path: Path) -> None:
    args = ["--no-mount", "--root", str(tmp_path / "r")]
    env = {"HOODYDB_TOKENS": ""}
    with ServeProcess(args, tmp_path, token=None, env=env) as first:
        token_file = tmp_path / "r" / ".hoodydb" / "token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) >= 32
        assert f"token: {token}" in first.stdout() and first.url in first.stdout()
        ok = first.client.post(
            "/api/v1/sqlite/databases", headers=first.auth_headers(token), json={"path": "a.db"}
        )
        assert ok.status_code == 201
    with ServeProcess(args, tmp_path, token=None, env=env) as second:
        # Printed once, when generated; after that only where it is kept.
        assert token not in second.stdout()
        assert f"token: stored in {token_file}" in second.stdout()
