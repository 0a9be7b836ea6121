"""The exporter-toolkit web config (``metrics.web_config_file``): TLS and basic auth.

The YAML format of prometheus/exporter-toolkit ``docs/web-configuration.md``, so one file can
serve fotawatch and the Go exporters next to it. What fotawatch does with each key:

- ``tls_server_config``: ``cert_file``, ``key_file`` (relative paths are resolved against the
  file's directory, as exporter-toolkit does), ``client_ca_file``, ``client_auth_type``
  (``NoClientCert``, ``VerifyClientCertIfGiven``, ``RequireAndVerifyClientCert``),
  ``min_version``/``max_version`` (``TLS12``, ``TLS13``; older versions are refused). Python's
  ``ssl`` cannot accept a client certificate without verifying it, so ``RequestClientCert`` and
  ``RequireAnyClientCert`` are refused; so are inline ``cert``/``key``/``client_ca``,
  ``cipher_suites``, ``curve_preferences`` and ``client_allowed_sans``.
  ``prefer_server_cipher_suites`` is accepted (OpenSSL prefers the server's order anyway).
- ``http_server_config.headers``: the five headers exporter-toolkit allows, with its value
  checks; added to every response. ``http2`` is accepted and ignored (aiohttp speaks HTTP/1.1).
- ``basic_auth_users``: user -> bcrypt hash, required on every endpoint when not empty.
- ``rate_limit``: refused (not supported).

Re-reading: like exporter-toolkit, changes apply without a restart. Users and headers: the
file's mtime is checked on each request and the file re-read when it changed; an invalid
new version is logged and the previous one kept (auth never falls open). Certificates: each TLS
handshake checks the mtimes of the certificate, key and CA files and, when one changed,
continues on a freshly built context, so a renewed certificate is served from the next
connection on. A change to the ``tls_server_config`` section itself (other paths, versions,
client auth) needs a restart.

Basic auth follows exporter-toolkit's ``web/handler.go``: an unknown user is checked against a
decoy hash, so the response time does not tell which users exist; successful checks are
cached (keyed by a digest of user, hash and password; no password is kept) so bcrypt does not
run on every scrape; bcrypt runs in a thread, one at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import structlog
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fotawatch.errors import ConfigError

__all__ = [
    "TlsSettings",
    "WebConfig",
    "load_web_config",
    "ssl_context",
    "web_config_hooks",
]

log = structlog.get_logger("fotawatch.webconfig")
KEY = "metrics.web_config_file"
REALM = 'Basic realm="fotawatch"'
# exporter-toolkit's configurable headers; None: any value.
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_SECTIONS = {
    "": {"tls_server_config", "http_server_config", "basic_auth_users"},
    "tls_server_config": {"cert_file", "key_file", "client_ca_file", "client_auth_type",
                          "min_version", "max_version", "prefer_server_cipher_suites"},
    "http_server_config": {"headers", "http2"},
}  # fmt: skip
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$")
# bcrypt (cost 10) of a random password: what an unknown user's password is checked against.
_DECOY = b"$2b$10$xymSXsqNvfzab612v2jpcOnY05KVXgrebV6LqQqIy3uAa4pZiREFi"
_OK_CACHE_MAX = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """``tls_server_config``, validated; paths absolute."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3

    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file, *filter(None, [self.client_ca_file]))


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """One version of the web config file."""

    path: Path | None = None
    tls: TlsSettings | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------- parsing


def _fail(path: Path, problem: str) -> ConfigError:
    return ConfigError(KEY, f"{path}: {problem}")


def _mapping(value: Any, where: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(path, f"{where or 'the file'} must be a mapping")
    unknown = sorted(set(value) - _SECTIONS.get(where, set(value)))
    if unknown:
        prefix = f"{where}." if where else ""
        raise _fail(path, f"{prefix}{unknown[0]} is not supported by fotawatch")
    return value


def _string(section: dict[str, Any], key: str, where: str, path: Path) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(path, f"{where}.{key} must be a string")
    return value


def _file(section: dict[str, Any], key: str, path: Path) -> Path | None:
    value = _string(section, key, "tls_server_config", path)
    if value is None:
        return None
    resolved = path.parent / Path(value).expanduser()
    if not resolved.is_file():
        raise _fail(path, f"tls_server_config.{key}: file not found: {resolved}")
    return resolved


def _version(section: dict[str, Any], key: str, default: str, path: Path) -> ssl.TLSVersion:
    name = _string(section, key, "tls_server_config", path) or default
    if name not in VERSIONS:
        raise _fail(path, f"tls_server_config.{key}: {name!r} is not one of TLS12, TLS13")
    return VERSIONS[name]


def _tls(section: dict[str, Any], path: Path) -> TlsSettings | None:
    if not section:
        return None
    cert, key = _file(section, "cert_file", path), _file(section, "key_file", path)
    if cert is None or key is None:
        raise _fail(path, "tls_server_config needs both cert_file and key_file")
    auth_name = _string(section, "client_auth_type", "tls_server_config", path) or "NoClientCert"
    if auth_name not in CLIENT_AUTH:
        raise _fail(path, f"tls_server_config.client_auth_type: {auth_name!r} is not supported")
    ca, auth = _file(section, "client_ca_file", path), CLIENT_AUTH[auth_name]
    if (ca is None) != (auth == ssl.CERT_NONE):
        raise _fail(path, "client_ca_file and a verifying client_auth_type go together")
    tls = TlsSettings(
        cert_file=cert,
        key_file=key,
        client_ca_file=ca,
        client_auth=auth,
        min_version=_version(section, "min_version", "TLS12", path),
        max_version=_version(section, "max_version", "TLS13", path),
    )
    if tls.min_version > tls.max_version:
        raise _fail(path, "tls_server_config.min_version is above max_version")
    return tls


def _headers(section: dict[str, Any], path: Path) -> dict[str, str]:
    headers = _mapping(section.get("headers"), "http_server_config.headers", path)
    for name, value in headers.items():
        if name not in HEADERS:
            raise _fail(path, f"http_server_config.headers: {name} cannot be configured")
        allowed = HEADERS[name]
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            raise _fail(path, f"http_server_config.headers.{name}: expected one of {allowed}")
    return {k: v for k, v in headers.items() if v}


def _users(value: Any, path: Path) -> dict[str, bytes]:
    users = _mapping(value, "basic_auth_users", path)
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise _fail(path, f"basic_auth_users.{user}: not a bcrypt hash")
    return {user: hashed.encode() for user, hashed in users.items()}


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise _fail(path, f"cannot read: {err.strerror}") from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(path, f"invalid YAML{where}: {err.problem}") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise _fail(path, "invalid YAML") from err


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file (raises ConfigError with one line); TLS files are loaded once
    to check them."""
    top = _mapping(_yaml(path), "", path)
    http = _mapping(top.get("http_server_config"), "http_server_config", path)
    tls = _tls(_mapping(top.get("tls_server_config"), "tls_server_config", path), path)
    config = WebConfig(
        path=path,
        tls=tls,
        headers=_headers(http, path),
        users=_users(top.get("basic_auth_users"), path),
    )
    if tls is not None:
        try:
            _context(tls)
        except (OSError, ssl.SSLError) as err:
            raise _fail(path, f"tls_server_config: cannot load the certificate: {err}") from err
    return config


# ---------------------------------------------------------------- TLS


def _context(tls: TlsSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=tls.client_ca_file)
    context.verify_mode = tls.client_auth
    return context


def _stamp(paths: tuple[Path, ...]) -> tuple[int, ...]:
    stamps = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)


class _RenewingContext:
    """The listener's context; each handshake switches to a rebuilt one if a file changed."""

    def __init__(self, tls: TlsSettings) -> None:
        self._tls = tls
        self._stamp = _stamp(tls.files())
        self.listener = _context(tls)
        self.listener.sni_callback = self._handshake  # runs on every handshake, SNI or not
        self._current = self.listener

    def _handshake(self, conn: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        stamp = _stamp(self._tls.files())
        if stamp != self._stamp:
            self._stamp = stamp  # a half-written pair is retried when the next file lands
            try:
                self._current = _context(self._tls)
                log.info("tls_certificate_reloaded", cert_file=str(self._tls.cert_file))
            except (OSError, ssl.SSLError) as err:
                log.error("tls_certificate_reload_failed", error=str(err), kept="previous")  # noqa: TRY400
        if self._current is not self.listener:
            conn.context = self._current


def ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server's SSLContext (None without ``tls_server_config``); picks up renewed certs."""
    return None if config.tls is None else _RenewingContext(config.tls).listener


# ---------------------------------------------------------------- users and headers


class _Reloading:
    """The current WebConfig: re-read when the file's mtime changes, kept if the new one is bad."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self._stamp = _stamp((config.path,)) if config.path else ()

    def current(self) -> WebConfig:
        path = self.config.path
        if path is None or (stamp := _stamp((path,))) == self._stamp:
            return self.config
        self._stamp = stamp
        try:
            self.config = load_web_config(path)
            log.info("web_config_reloaded", path=str(path))
        except ConfigError as err:
            log.error("web_config_reload_failed", error=str(err), kept="previous")  # noqa: TRY400
        return self.config


def _digest(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.digest()


def _credentials(header: str | None) -> tuple[str, bytes] | None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        return (user.decode(), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _bcrypt_ok(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # e.g. a password over bcrypt's 72 bytes
        return False


class _BasicAuth:
    """Checks credentials against the users; caches successes, never passwords."""

    def __init__(self) -> None:
        self._ok: set[bytes] = set()
        self._lock = asyncio.Lock()  # one bcrypt at a time, as exporter-toolkit does

    async def allowed(self, users: Mapping[str, bytes], header: str | None) -> bool:
        credentials = _credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else _DECOY
        digest = _digest(user.encode(), hashed, password)
        if digest in self._ok:
            return known
        async with self._lock:
            ok = await asyncio.to_thread(_bcrypt_ok, password, hashed) and known
        if ok:
            if len(self._ok) >= _OK_CACHE_MAX:
                self._ok.clear()
            self._ok.add(digest)
        return ok


Prepare = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def web_config_hooks(config: WebConfig) -> tuple[Middleware, Prepare]:
    """(middleware, ``on_response_prepare`` hook): basic auth on every endpoint, and the
    configured headers on every response (200, 401, 404 ...).

    The headers are applied when a response is prepared, not after the handler returns: a
    streamed response (``/metrics``) has sent its headers by then.
    """
    source, auth = _Reloading(config), _BasicAuth()

    @web.middleware
    async def web_config(request: web.Request, handler: Handler) -> web.StreamResponse:
        current = source.current()
        header = request.headers.get("Authorization")
        if current.users and not await auth.allowed(current.users, header):
            return web.Response(
                status=401, text="401 Unauthorized\n", headers={"WWW-Authenticate": REALM}
            )
        return await handler(request)

    async def add_headers(_: web.Request, response: web.StreamResponse) -> None:
        # The config the middleware just read (it checks the file once per request).
        response.headers.update(source.config.headers)

    return web_config, add_headers
