"""A stand-in for systemd's end of ``$NOTIFY_SOCKET``: bind it, collect messages, wait on them.

    async with NotifyReceiver(tmp_path) as receiver:
        env = {**os.environ, **receiver.env}          # hand NOTIFY_SOCKET to the daemon
        ...
        await receiver.wait_for(lambda ms: any(m.fields.get("READY") == "1" for m in ms), 10)

``path`` is a filesystem socket under ``directory`` (or under a short temporary directory when
that path would not fit in ``sun_path``), or ``@fotawatch-test-<random>`` with ``abstract=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["Notification", "NotifyReceiver"]

_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


@dataclass(frozen=True, slots=True)
class Notification:
    """One datagram as systemd would see it, stamped with the receiving loop's clock."""

    text: str
    received_at: float

    @property
    def fields(self) -> dict[str, str]:
        """The ``KEY=VALUE`` lines as a dict (a later duplicate key wins, as in systemd)."""
        pairs = (line.partition("=") for line in self.text.splitlines())
        return {key: value for key, _, value in pairs}


class NotifyReceiver:
    """Bind a datagram socket, record every message, and wait for conditions on them."""

    def __init__(self, directory: Path, *, abstract: bool = False) -> None:
        self._directory = directory
        self._abstract = abstract
        self._own_dir: str | None = None
        self._socket: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.path = ""
        self.messages: list[Notification] = []

    @property
    def env(self) -> dict[str, str]:
        """The environment a notifying process needs."""
        return {"NOTIFY_SOCKET": self.path}

    async def __aenter__(self) -> Self:
        self.path, address = self._choose_address()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        sock.bind(address)
        self._socket = sock
        self._reader = asyncio.create_task(self._read_forever(sock))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._socket is not None:
            self._socket.close()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    async def wait_for(
        self, predicate: Callable[[Sequence[Notification]], bool], timeout: float
    ) -> list[Notification]:
        """Wait until ``predicate(messages)`` holds; fail with what arrived after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: predicate(self.messages))
        except TimeoutError:
            texts = [m.text for m in self.messages]
            raise AssertionError(f"condition not met within {timeout}s; received {texts}") from None
        return list(self.messages)

    def with_field(self, key: str, value: str | None = None) -> list[Notification]:
        """Messages carrying ``key`` (with ``value``, when given)."""
        return [
            m
            for m in self.messages
            if key in m.fields and (value is None or m.fields[key] == value)
        ]

    def _choose_address(self) -> tuple[str, str]:
        if self._abstract:
            name = f"fotawatch-test-{secrets.token_hex(8)}"
            return "@" + name, "\0" + name
        path = str(self._directory / "notify.sock")
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            self._own_dir = tempfile.mkdtemp(prefix="fw-notify-")
            path = str(Path(self._own_dir) / "notify.sock")
        return path, path

    async def _read_forever(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 65536)
            message = Notification(text=data.decode(), received_at=loop.time())
            async with self._changed:
                self.messages.append(message)
                self._changed.notify_all()
