"""Child processes, loopback HTTP and /proc readings for the benchmark (stdlib only).

Every child is started by the bench itself and stopped by its own pid (SIGTERM, then SIGKILL).
Times are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so a timestamp taken in
one process (the simulator's ``request_times``, the fake Slack's ``received_at``) compares with
one taken in another.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

__all__ = [
    "PYTHON",
    "Child",
    "CpuSample",
    "NotifyListener",
    "cpu_sample",
    "free_port",
    "http_get",
    "http_json",
    "memory_kb",
]

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
_URL = re.compile(r"listening on (\S+)")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body as sent); status 0 when nothing answers (connection refused)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def http_json(url: str, body: Any = None, *, method: str = "GET", timeout: float = 30.0) -> Any:
    """One JSON request to a loopback admin endpoint; raises on a non-2xx answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


class Child:
    """A subprocess that may announce ``... listening on URL`` on stdout; logs go to files."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd  # ``python -m fotawatch`` imports the tree it is started in
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.started_at = 0.0
        self._files: list[IO[bytes]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, announce: bool = False, timeout: float = 60.0) -> Child:
        """Spawn; with ``announce`` wait for the URL line and keep draining stdout to a file."""
        err = self.stderr_path.open("wb")
        out = self.stdout_path.open("wb")
        self._files += [err, out]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE if announce else out, stderr=err, env=self.env,
            cwd=self.cwd,
        )
        if announce:
            self.url = self._read_url(out, timeout)
        return self

    def _read_url(self, out: IO[bytes], timeout: float) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        stream = self.proc.stdout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stream], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            line = stream.readline()
            out.write(line)
            out.flush()
            match = _URL.search(line.decode(errors="replace"))
            if match:
                threading.Thread(target=_drain, args=(stream, out), daemon=True).start()
                return match.group(1)
            if not line:
                break
        self.stop()
        tail = self.stderr_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not announce its URL:\n{tail}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (this child only), then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in self._files:
            f.close()
        self._files.clear()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(stream: IO[bytes], out: IO[bytes]) -> None:
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            out.write(line)
            out.flush()


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU used so far by a process: /proc/<pid>/stat ticks and the threads' schedstat ns."""

    at: float
    ticks: int  # utime + stime
    ns: int  # sum of /proc/<pid>/task/*/schedstat on-CPU time (live threads only)

    def seconds_since(self, earlier: CpuSample) -> tuple[float, float]:
        """(CPU seconds from stat ticks, CPU seconds from schedstat) between two samples."""
        return (self.ticks - earlier.ticks) / CLK_TCK, (self.ns - earlier.ns) / 1e9


def cpu_sample(pid: int) -> CpuSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5): utime, stime
    ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            ns += int((task / "schedstat").read_text().split()[0])
    return CpuSample(at=time.monotonic(), ticks=ticks, ns=ns)


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of a process, in kB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmHWM", "VmRSS"}:
            values[key] = int(rest.split()[0])
    return values


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def wait_for(self, line: str, timeout: float) -> float | None:
        """monotonic time at which a message holding ``line`` arrived; None on timeout."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                break
            message = self._sock.recv(65536).decode(errors="replace")
            if line in message.splitlines():
                return time.monotonic()
        return None

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
