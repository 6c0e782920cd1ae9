"""The one way drd runs external programs (pgbackrest, pg_ctl, initdb, nginx ...).

Guarantees, in the spirit of Patroni's and Barman's command wrappers:

* argument lists only, never a shell;
* bounded in time: every call has a timeout, after which the whole process group is
  killed (pgBackRest forks workers; killing the parent alone would leave them);
* explicit allowed return codes; anything else raises ``CommandError`` carrying the
  exit code and the redacted tail of stderr;
* output streamed line by line to the log at debug level, redacted;
* secrets travel in the environment or in mode-600 files, never in arguments: ``run``
  refuses an argument that contains a registered secret;
* run as another OS user: when drd runs as root (development, CI) commands for
  PostgreSQL go through ``runuser -u postgres --``; as non-root they run as is;
* cancellable through a ``threading.Event``.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drd.errors import CommandError, DrdError
from drd.log import get_logger
from drd.redact import MASK, redact

log = get_logger("drd.command")

TAIL_LINES = 40


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float


def as_user_prefix(user: str | None) -> list[str]:
    """The argv prefix that runs a command as ``user`` (empty when already that user)."""
    if user is None:
        return []
    current = pwd.getpwuid(os.geteuid()).pw_name
    if current == user:
        return []
    if os.geteuid() != 0:
        raise DrdError(
            f"cannot run commands as OS user {user!r} while running as {current!r}",
            hint="run drd as that user, or leave os_user unset",
        )
    return ["runuser", "-u", user, "--"]


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    ok_codes: Sequence[int] = (0,),
    input_text: str | None = None,
    cancel: threading.Event | None = None,
    error_cls: type[CommandError] = CommandError,
) -> CommandResult:
    """Run a program and wait for it, within ``timeout`` seconds."""
    argv = [*as_user_prefix(user), *map(str, args)]
    _refuse_secrets_in(argv, Path(str(args[0])).name)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if cwd is None and user is not None:
        cwd = "/"  # another user may not be allowed into our working directory
    shown = " ".join(argv)
    log.debug("command_start", command=shown, timeout=timeout)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise error_cls(f"cannot start {argv[0]}: {exc.strerror}") from exc

    out: list[str] = []
    err: deque[str] = deque(maxlen=2000)
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, out, "stdout"), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, "stderr"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if input_text is not None and proc.stdin is not None:
        proc.stdin.write(input_text)
        proc.stdin.close()

    try:
        reason = _wait(proc, started + timeout, timeout, cancel)
    except BaseException:
        # Ctrl-C (KeyboardInterrupt) or any error while waiting: the child runs in its
        # own session and would outlive us; take its whole process group down first.
        _kill_group(proc)
        raise
    for reader in readers:
        reader.join(timeout=5)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    proc.wait()
    duration = time.monotonic() - started
    stdout, stderr = "".join(out), "".join(err)
    name = Path(str(args[0])).name
    tail = redact("".join(list(err)[-TAIL_LINES:]).strip())
    if reason:
        raise error_cls(f"{name} {reason}", returncode=None, stderr_tail=tail)
    rc = proc.returncode
    log.debug("command_end", command=name, returncode=rc, duration=round(duration, 3))
    if rc not in ok_codes:
        detail = tail.splitlines()[-1] if tail else redact(stdout.strip()[-300:])
        raise error_cls(f"{name} exited with code {rc}: {detail}", returncode=rc, stderr_tail=tail)
    return CommandResult(tuple(argv), rc, stdout, stderr, duration)


def _refuse_secrets_in(argv: Sequence[str], program: str) -> None:
    for arg in argv:
        if redact(arg) != arg and MASK not in arg:
            raise DrdError(
                f"refusing to pass a secret on the command line of {program}",
                hint="pass it through the environment or a mode-600 config file",
            )


def _wait(
    proc: subprocess.Popen[str], deadline: float, timeout: float, cancel: threading.Event | None
) -> str | None:
    """Wait for exit; on cancel or timeout kill the group and say why."""
    while proc.poll() is None:
        reason = None
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
        elif time.monotonic() > deadline:
            reason = f"timed out after {timeout:g}s"
        if reason:
            _kill_group(proc)
            return reason
        time.sleep(0.02)
    return None


def _pump(stream: object, sink: list[str] | deque[str], label: str) -> None:
    if stream is None:
        return
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)
        log.debug("command_output", stream=label, line=line.rstrip("\n"))


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
