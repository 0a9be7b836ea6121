"""fotawatch.webconfig: the exporter-toolkit web config file, basic auth and TLS, over loopback."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import yaml
from prometheus_client import CollectorRegistry

from fotawatch.errors import ConfigError
from fotawatch.metrics import Metrics
from fotawatch.server import make_app, start
from fotawatch.webconfig import WebConfig, load_web_config, ssl_context

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


class Status:
    """A ServerStatus that is always healthy and ready."""

    version = "1.0"

    def healthy(self) -> tuple[bool, str]:
        return True, ""

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def campaign_count(self) -> int:
        return 0

    def role(self) -> str:
        return ""


class Daemon:
    version = "1.0"
    login_circuit_open = False
    api_up = True
    reload_ok = True
    reload_ok_at: dt.datetime | None = None
    leader: bool = True
    leader_changes: int = 1


def write(path: Path, config: object) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def touch_later(path: Path) -> None:
    """Give ``path`` an mtime clearly different from before (coarse file-system clocks)."""
    later = time.time() + 5
    os.utime(path, (later, later))


@contextlib.asynccontextmanager
async def serving(config: WebConfig | None) -> AsyncIterator[str]:
    registry = CollectorRegistry()
    Metrics(registry, views=list, polling=lambda _k: True, status=Daemon())
    app = make_app(registry=registry, status=Status(), web_config=config)
    context = ssl_context(config) if config is not None else None
    server = await start(app, "127.0.0.1", 0, context)
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.port}"
    finally:
        await server.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def fetch(
    url: str, headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], str]:
    connector = aiohttp.TCPConnector(ssl=tls) if tls is not None else None
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers or {}) as response,
    ):
        return response.status, dict(response.headers), await response.text()


# ---------------------------------------------------------------- certificates (openssl CLI)


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_cert(directory: Path, ca: tuple[Path, Path], name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (server and client use) signed by ``ca``."""
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    ext = directory / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
        str(time.time_ns()), "-days", "2", "-out", cert, "-extfile", ext,
    )  # fmt: skip
    return cert, key


def client_context(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two CAs, a server certificate from each, and a client certificate from the first."""
    if subprocess.run(["which", "openssl"], capture_output=True, check=False).returncode:
        pytest.skip("openssl not found")
    d = tmp_path_factory.mktemp("pki")
    ca1, ca2 = make_ca(d, "ca1"), make_ca(d, "ca2")
    return {
        "ca1": ca1,
        "ca2": ca2,
        "server1": make_cert(d, ca1, "server1"),
        "server2": make_cert(d, ca2, "server2"),
        "client": make_cert(d, ca1, "client"),
    }


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("basic_auth_users: [", "invalid YAML at line"),
        ("- a\n- b\n", "the file must be a mapping"),
        ("rate_limit: {burst: 1}\n", "rate_limit is not supported by fotawatch"),
        ("tls_server_config: {cert_file: x.crt}\n", "file not found"),
        ("tls_server_config: {cipher_suites: [x]}\n", "cipher_suites is not supported"),
        ("http_server_config: {headers: {X-Powered-By: me}}\n", "X-Powered-By cannot be"),
        ("http_server_config: {headers: {X-Frame-Options: allow}}\n", "X-Frame-Options"),
        ("basic_auth_users: {alice: plaintext}\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("basic_auth_users: {alice: 7}\n", "basic_auth_users.alice: not a bcrypt hash"),
    ],
)
def test_invalid_file_is_one_line_config_error(tmp_path: Path, text: str, problem: str) -> None:
    """Each problem is a ConfigError on metrics.web_config_file with a one-line message."""
    path = write(tmp_path / "web.yml", text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert "metrics.web_config_file" == caught.value.key
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ({"client_auth_type": "RequestClientCert"}, "'RequestClientCert' is not supported"),
        ({"min_version": "TLS11"}, "'TLS11' is not one of TLS12, TLS13"),
        ({"min_version": "TLS13", "max_version": "TLS12"}, "min_version is above max_version"),
        ({"client_auth_type": "RequireAndVerifyClientCert"}, "client_ca_file and a verifying"),
        ({"client_ca_file": "ca1.crt"}, "client_ca_file and a verifying"),
        ({"key_file": "server2.key"}, "cannot load the certificate"),
    ],
)
def test_invalid_tls_section(
    pki: dict[str, tuple[Path, Path]], tls: dict[str, str], problem: str
) -> None:
    """TLS settings fotawatch cannot honour, or a key that does not match, are refused."""
    directory = pki["ca1"][0].parent
    base = {"cert_file": "server1.crt", "key_file": "server1.key"}
    path = write(directory / "bad-web.yml", {"tls_server_config": {**base, **tls}})
    with pytest.raises(ConfigError, match=problem):
        load_web_config(path)


def test_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    """An empty file is valid and changes nothing."""
    config = load_web_config(write(tmp_path / "web.yml", ""))
    assert (None, {}, {}) == (config.tls, dict(config.headers), dict(config.users))


def test_relative_paths_resolve_against_the_file(pki: dict[str, tuple[Path, Path]]) -> None:
    """cert_file and key_file are relative to the config file's directory."""
    directory = pki["ca1"][0].parent
    tls = {"cert_file": "server1.crt", "key_file": "server1.key", "min_version": "TLS13"}
    config = load_web_config(write(directory / "web.yml", {"tls_server_config": tls}))
    assert config.tls is not None
    assert (pki["server1"][0], ssl.TLSVersion.TLSv1_3) == (
        config.tls.cert_file,
        config.tls.min_version,
    )


# ---------------------------------------------------------------- basic auth and headers


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "web.yml",
        {
            "basic_auth_users": {"alice": HASH},
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
        },
    )


async def test_basic_auth_guards_every_endpoint(auth_file: Path) -> None:
    """No, wrong or unknown credentials get 401 with the realm; the right ones get through."""
    async with serving(load_web_config(auth_file)) as base:
        for headers in ({}, basic("alice", "wrong"), basic("mallory", PASSWORD)):
            for path in ("/metrics", "/healthz", "/", "/nope"):
                code, response_headers, _ = await fetch(base + path, headers)
                assert 401 == code, (path, headers)
                assert 'Basic realm="fotawatch"' == response_headers["WWW-Authenticate"]
        code, _, body = await fetch(f"{base}/metrics", basic("alice", PASSWORD))
        assert 200 == code
        assert "fotawatch_build_info" in body


async def test_malformed_authorization_headers_are_401(auth_file: Path) -> None:
    """Garbage in Authorization is a 401, never a 500."""
    headers = ["Basic", "Basic !!!", "Bearer abc", "Basic " + base64.b64encode(b"nocolon").decode()]
    async with serving(load_web_config(auth_file)) as base:
        for header in headers:
            assert 401 == (await fetch(f"{base}/metrics", {"Authorization": header}))[0]


async def test_password_and_hash_never_appear_in_responses(auth_file: Path) -> None:
    """Neither the password nor its hash is echoed in any header or body."""
    async with serving(load_web_config(auth_file)) as base:
        for headers in ({}, basic("alice", PASSWORD), basic("alice", PASSWORD + "x")):
            for path in ("/metrics", "/", "/healthz", "/readyz", "/nope"):
                _, response_headers, body = await fetch(base + path, headers)
                seen = body + repr(response_headers)
                assert PASSWORD not in seen
                assert HASH not in seen
                assert HASH[7:29] not in seen  # the salt


async def test_configured_headers_are_on_every_response(auth_file: Path) -> None:
    """http_server_config.headers are added to 200s, 401s and 404s alike."""
    async with serving(load_web_config(auth_file)) as base:
        for path, headers in (("/metrics", basic("alice", PASSWORD)), ("/", {}), ("/nope", {})):
            assert "deny" == (await fetch(base + path, headers))[1]["X-Frame-Options"]


async def test_successful_checks_are_cached(tmp_path: Path) -> None:
    """Only the first request with a credential pays for bcrypt."""
    slow = bcrypt.hashpw(b"pw", bcrypt.gensalt(12))
    started = time.perf_counter()
    bcrypt.checkpw(b"pw", slow)
    one_check = time.perf_counter() - started
    path = write(tmp_path / "web.yml", {"basic_auth_users": {"bob": slow.decode()}})
    async with serving(load_web_config(path)) as base:
        assert 200 == (await fetch(f"{base}/healthz", basic("bob", "pw")))[0]
        started = time.perf_counter()
        for _ in range(5):
            assert 200 == (await fetch(f"{base}/healthz", basic("bob", "pw")))[0]
        assert time.perf_counter() - started < one_check


async def test_users_are_reread_when_the_file_changes(auth_file: Path) -> None:
    """A changed file applies to the next request; an invalid change keeps the last good one."""
    async with serving(load_web_config(auth_file)) as base:
        assert 200 == (await fetch(f"{base}/healthz", basic("alice", PASSWORD)))[0]
        new = bcrypt.hashpw(b"new password", bcrypt.gensalt(4)).decode()
        write(auth_file, {"basic_auth_users": {"alice": new}})
        touch_later(auth_file)
        assert 401 == (await fetch(f"{base}/healthz", basic("alice", PASSWORD)))[0]
        assert 200 == (await fetch(f"{base}/healthz", basic("alice", "new password")))[0]
        write(auth_file, "basic_auth_users: [broken")
        os.utime(auth_file, (time.time() + 10, time.time() + 10))
        assert 401 == (await fetch(f"{base}/healthz"))[0]
        assert 200 == (await fetch(f"{base}/healthz", basic("alice", "new password")))[0]


# ---------------------------------------------------------------- TLS


def tls_file(pki: dict[str, tuple[Path, Path]], name: str, **extra: str) -> Path:
    cert, key = pki["server1"]
    tls = {"cert_file": str(cert), "key_file": str(key), **extra}
    config = {"tls_server_config": tls, "basic_auth_users": {"alice": HASH}}
    return write(cert.parent / name, config)


async def test_served_over_tls_with_the_ca_pinned(pki: dict[str, tuple[Path, Path]]) -> None:
    """https works with only the test CA trusted; basic auth still applies inside TLS."""
    config = load_web_config(tls_file(pki, "tls.yml"))
    async with serving(config) as base:
        assert base.startswith("https://")
        tls = client_context(pki["ca1"][0])
        assert 401 == (await fetch(f"{base}/metrics", tls=tls))[0]
        code, _, body = await fetch(f"{base}/metrics", basic("alice", PASSWORD), tls)
        assert (200, True) == (code, "fotawatch_build_info" in body)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(f"{base}/metrics", tls=client_context(pki["ca2"][0]))


async def test_renewed_certificate_is_served_to_new_connections(
    pki: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """Replacing the certificate and key files takes effect without a restart."""
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    cert.write_bytes(pki["server1"][0].read_bytes())
    key.write_bytes(pki["server1"][1].read_bytes())
    path = write(tmp_path / "web.yml", {"tls_server_config": {"cert_file": "live.crt",
                                                              "key_file": "live.key"}})  # fmt: skip
    async with serving(load_web_config(path)) as base:
        assert 200 == (await fetch(f"{base}/healthz", tls=client_context(pki["ca1"][0])))[0]
        cert.write_bytes(pki["server2"][0].read_bytes())
        key.write_bytes(pki["server2"][1].read_bytes())
        touch_later(cert)
        touch_later(key)
        assert 200 == (await fetch(f"{base}/healthz", tls=client_context(pki["ca2"][0])))[0]


async def test_client_certificates_when_required(pki: dict[str, tuple[Path, Path]]) -> None:
    """RequireAndVerifyClientCert: no certificate, no response; the CA's client gets through."""
    extra = {"client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "ca1.crt"}
    config = load_web_config(tls_file(pki, "mtls.yml", **extra))
    async with serving(config) as base:
        with pytest.raises(aiohttp.ClientError):
            await fetch(f"{base}/healthz", basic("alice", PASSWORD), client_context(pki["ca1"][0]))
        tls = client_context(pki["ca1"][0], pki["client"])
        assert 200 == (await fetch(f"{base}/healthz", basic("alice", PASSWORD), tls))[0]
