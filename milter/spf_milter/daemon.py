"""``spf-milter run``: the daemon's life from start to stop.

Start-up: load and validate the configuration (exit 78 on any problem),
set up logging, start the event loop, open the milter socket, give it its
mode and group, drop privileges, serve. libmilter runs in its own thread;
the main thread handles the signals: SIGHUP reloads the configuration and
policy (an invalid file keeps the old ones), SIGTERM and SIGINT stop.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import signal
import socket
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from spf_milter import __version__, callbacks, logsetup
from spf_milter.config import (
    EX_CONFIG,
    ConfigError,
    DaemonConfig,
    InetSocket,
    MetricsConfig,
    Socket,
    UnixSocket,
    load_all,
)
from spf_milter.eventloop import EventLoop
from spf_milter.metrics import Metrics, PrometheusMetrics
from spf_milter.service import Service, make_cache, make_settings

log = logging.getLogger(__name__)

EX_OK: Final = 0
EX_SOFTWARE: Final = 70
JOIN_INTERVAL: Final = 0.1  # seconds; the main thread wakes up for signals
# libmilter's listener looks for a stop request between polls of up to 5 s
# (MI_CHK_TIME); a signal to its thread ends the poll at once. libmilter
# blocks SIGHUP, SIGTERM and SIGINT in its threads, not this one.
WAKE_SIGNAL: Final = signal.SIGUSR2
WAKE_INTERVAL: Final = 0.1  # seconds between two wake-up signals
WAKE_TRIES: Final = 60  # beyond libmilter's 5 s poll: it stops by itself


class StartupError(Exception):
    """The daemon cannot start: the message says why."""


def run(config_path: Path) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit status."""
    try:
        configuration = load_all(config_path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EX_CONFIG
    daemon = configuration.daemon
    logsetup.configure(daemon.log)
    cache = make_cache(daemon.dns)
    try:
        metrics = start_metrics(daemon.metrics)
        settings = make_settings(configuration, cache=cache, metrics=metrics)
    except (StartupError, ValueError) as error:
        log.error("cannot start: %s", error)
        return EX_CONFIG
    try:
        privileges = resolve_privileges(daemon)
        _prepare_socket_directory(daemon)
    except (StartupError, OSError) as error:
        log.error("cannot start: %s", error)
        return EX_CONFIG
    loop = EventLoop()
    loop.start()
    service = Service(config_path, settings, loop, cache, metrics)
    metrics.watch_cache(lambda: service.cache)
    try:
        return _serve(service, daemon, privileges)
    finally:
        metrics.stop()
        loop.stop()


def _serve(service: Service, daemon: DaemonConfig, privileges: Privileges) -> int:
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            callbacks.serve(
                service,
                daemon.socket.connection_string(),
                after_open=lambda: _after_open(daemon, privileges),
            )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failure.append(error)

    thread = threading.Thread(target=serve, name="libmilter")
    stop = _install_signal_handlers(service)
    log.info(
        "spf-milter %s listening on %s", __version__, daemon.socket.connection_string()
    )
    thread.start()
    while thread.is_alive() and not stop.is_set():
        thread.join(JOIN_INTERVAL)
    if stop.is_set():
        # Transactions in progress finish first, while libmilter still reads
        # every command: once stopped, it no longer reads a session's next
        # command reliably (a RCPT not yet read was never answered).
        _finish_transactions(service)
        stop_listener(thread)
    thread.join()
    if failure:
        log.error(
            "cannot serve on %s: %s", daemon.socket.connection_string(), failure[0]
        )
        return EX_SOFTWARE
    log.info("stopped")
    return EX_OK


def _install_signal_handlers(service: Service) -> threading.Event:
    """Handle SIGHUP, SIGTERM, SIGINT; return the event a stop request sets."""
    stop = threading.Event()

    def reload(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading the configuration")
        service.reload()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # The main thread does the stopping: a handler must return quickly.
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Only interrupts a system call (stop_listener); by default it would kill.
    signal.signal(WAKE_SIGNAL, lambda signum, frame: None)
    return stop


def stop_listener(listener: threading.Thread) -> None:
    """Close libmilter's listening socket now, not at its next 5 s poll.

    smfi_stop() marks the milter as stopping, then waits for the listener,
    which looks at that mark only between polls of up to 5 s. So it runs in
    a thread of its own while this one interrupts the poll of ``listener``
    (the thread in smfi_main) with WAKE_SIGNAL: libmilter takes EINTR as a
    cue to look at the mark again, sees it and closes the socket.
    """
    stopper = threading.Thread(target=callbacks.stop, name="stop", daemon=True)
    stopper.start()
    for _ in range(WAKE_TRIES):
        if listener.ident is None or not listener.is_alive():
            return
        with contextlib.suppress(ProcessLookupError):  # it just ended
            signal.pthread_kill(listener.ident, WAKE_SIGNAL)
        stopper.join(WAKE_INTERVAL)
        if not stopper.is_alive():
            return


def _finish_transactions(service: Service) -> None:
    """Let the MTA's messages in progress finish, within the check wait limit."""
    traffic = service.traffic
    limit = service.settings.wait_limit
    if traffic.wait_idle(0):
        return
    log.info(
        "waiting for %d transaction(s) in progress, at most %g s",
        traffic.transactions(),
        limit,
    )
    if not traffic.wait_idle(limit):
        log.warning(
            "%d transaction(s) still in progress after %g s: stopping anyway",
            traffic.transactions(),
            limit,
        )


@dataclass(frozen=True, slots=True)
class Privileges:
    """Who the daemon becomes after opening its socket, and the socket's group."""

    user: str | None
    uid: int | None
    gid: int | None
    socket_gid: int | None


def start_metrics(config: MetricsConfig) -> Metrics:
    """Start the Prometheus endpoint if enabled; StartupError if it cannot be."""
    if not config.enabled:
        return Metrics()
    try:
        return PrometheusMetrics(str(config.address), config.port)
    except ImportError:
        raise StartupError(
            "metrics.enabled needs the prometheus-client package"
            " (pip install 'spf-milter[metrics]')"
        ) from None
    except OSError as error:
        raise StartupError(
            f"metrics: cannot listen on {config.address} port {config.port}: {error}"
        ) from None


def resolve_privileges(daemon: DaemonConfig) -> Privileges:
    """Look up the configured user and groups; StartupError if one is unknown."""
    try:
        user = pwd.getpwnam(daemon.user) if daemon.user else None
    except KeyError:
        raise StartupError(f"user {daemon.user!r} does not exist") from None
    try:
        gid = grp.getgrnam(daemon.group).gr_gid if daemon.group else None
        socket = daemon.socket
        socket_group = socket.group if isinstance(socket, UnixSocket) else None
        socket_gid = grp.getgrnam(socket_group).gr_gid if socket_group else None
    except KeyError as error:
        raise StartupError(f"group {error.args[0]} does not exist") from None
    if user is None and os.geteuid() == 0:
        # Least privilege: root must be asked for, not fallen into.
        raise StartupError(
            "refusing to run as root: set user (and group) in the configuration,"
            " or user: root to run as root anyway"
        )
    if user is not None and gid is None:
        gid = user.pw_gid
    uid = user.pw_uid if user else None
    return Privileges(daemon.user, uid, gid, socket_gid)


def _prepare_socket_directory(daemon: DaemonConfig) -> None:
    socket = daemon.socket
    if isinstance(socket, UnixSocket) and not socket.path.parent.exists():
        socket.path.parent.mkdir(mode=0o755, parents=True)
        log.info("created %s", socket.path.parent)


def find_listener(listen: Socket) -> socket.socket | None:
    """Return a duplicate of libmilter's listening socket, which it keeps to itself.

    Socket options and shutdown() act on the socket, not on the descriptor,
    so the duplicate serves to tune it; the caller closes the duplicate.
    """
    wanted: object
    if isinstance(listen, InetSocket):
        wanted = (str(listen.host), listen.port)
    else:
        wanted = str(listen.path)
    for entry in Path("/proc/self/fd").iterdir():
        try:
            candidate = socket.socket(fileno=os.dup(int(entry.name)))
        except (ValueError, OSError):
            continue
        try:
            name = candidate.getsockname()
            if candidate.type == socket.SOCK_STREAM and (
                name == wanted or (isinstance(name, tuple) and name[:2] == wanted)
            ):
                return candidate
        except OSError:
            pass
        candidate.close()
    return None


def set_nodelay(listen: InetSocket) -> None:
    """Turn Nagle's algorithm off on the listening TCP socket.

    libmilter sends a reply as several small writes (each header change,
    then "continue"); with Nagle, a write waits for the ACK of the one
    before, which the MTA delays by up to 40 ms. Sockets that accept()
    returns inherit TCP_NODELAY from the listener on Linux.
    """
    listener = find_listener(listen)
    if listener is None:
        log.warning("could not set TCP_NODELAY on %s", listen.connection_string())
        return
    with listener:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def set_socket_owner_and_mode(listen: UnixSocket, owner: int, group: int) -> None:
    """Give the socket file its owner, group (-1: unchanged) and mode, safely.

    Whoever can write the socket's directory could swap a symlink in at its
    path between bind() and now, and chown()/chmod() by path would change
    the symlink's target, as root. So the path is opened without following
    a symlink (O_PATH | O_NOFOLLOW), must still be a socket, and is changed
    through that descriptor (/proc/self/fd/N names the very inode).
    """
    try:
        fd = os.open(listen.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise StartupError(f"cannot open {listen.path}: {error.strerror}") from None
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise StartupError(
                f"{listen.path} is no longer the socket just bound: something"
                " replaced it (can others write its directory?)"
            )
        pinned = f"/proc/self/fd/{fd}"
        if owner != -1 or group != -1:
            os.chown(pinned, owner, group)
        Path(pinned).chmod(listen.mode)
    finally:
        os.close(fd)


def _after_open(daemon: DaemonConfig, privileges: Privileges) -> None:
    """Tune or give permissions to the new socket, then drop privileges."""
    listen = daemon.socket
    if isinstance(listen, InetSocket):
        set_nodelay(listen)
    if isinstance(listen, UnixSocket):
        owner = privileges.uid if privileges.uid is not None else -1
        group = privileges.socket_gid if privileges.socket_gid is not None else -1
        set_socket_owner_and_mode(listen, owner, group)
    if privileges.uid is None or privileges.user is None:
        return  # not root (resolve_privileges refuses root without a user)
    if os.geteuid() != 0:
        if privileges.uid != os.geteuid():
            log.warning(
                "not started as root: cannot switch to user %s, running as uid %d",
                privileges.user,
                os.geteuid(),
            )
        return
    gid = privileges.gid if privileges.gid is not None else os.getegid()
    os.setgroups([])
    os.initgroups(privileges.user, gid)
    os.setgid(gid)
    os.setuid(privileges.uid)
    log.info(
        "running as user %s (uid %d, gid %d)", privileges.user, privileges.uid, gid
    )
