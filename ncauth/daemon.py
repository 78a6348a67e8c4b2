"""``ncauth serve``: the authentication daemon on a Unix socket.

Why a daemon: a checkpassword login pays a Python start, the imports and a fresh
database connection every time, and a login storm forks one argon2 (64 MiB) per
login. The daemon keeps the pool and the imports warm, bounds the argon2 work to
``workers`` threads (argon2-cffi releases the GIL) plus a bounded queue, answers
repeated logins from the verified-credentials cache, and is what Dovecot 2.4's Lua
passdb talks to.

Connections are served by asyncio, so a slow or silent client costs a coroutine,
never a worker; only decisions run in the worker threads. The protocol is in
``ncauth.protocol``. Peers are checked with SO_PEERCRED against ``allowed_users``.
SIGTERM drains in-flight requests, SIGHUP reloads the configuration.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import socket
import stat
import struct
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ncauth import config as config_mod
from ncauth import hashes, log, socketmap
from ncauth.cache import VerifiedCache
from ncauth.errors import ConfigError, NcauthError
from ncauth.outcome import Outcome
from ncauth.policy import Authenticator, Verdict, in_networks
from ncauth.protocol import HELLO, MAX_LINE, Listed, MalformedRequest, Reply, Request, is_hello
from ncauth.throttle import Throttle

#: the socketmap names ``[postfix] socket`` answers (``socketmap:unix:PATH:NAME``)
MAPS = ("recipients", "senders")
#: seconds a map lookup may take: well inside Postfix's 100 s wait, so it gets TEMP, not silence
MAP_TIMEOUT = 20.0


#: the reason a request gets when the workers and the queue are full
BUSY = "busy: too many requests waiting"

_T = TypeVar("_T")


class _LineTooLong(Exception):
    pass


class _Busy(Exception):
    """The workers and their queue are full: the request is answered TEMPFAIL at once."""


class Stats:
    """Counters for ``ncauth status``; updated from the event loop thread only."""

    def __init__(self) -> None:
        self.started = time.time()
        self.verdicts: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=4096)
        self.connections = 0
        self.refused_peers = 0
        self.busy = 0

    def record(self, answer: str, seconds: float) -> None:
        self.verdicts[answer] += 1
        self.latencies.append(seconds * 1000)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Daemon:
    """One configuration's authenticator behind a Unix socket."""

    def __init__(self, config: config_mod.Config) -> None:
        self.config = config
        self.auth = self._authenticator(config)
        self.throttle: Throttle | None = None
        self.throttle = self._throttle(config)
        d = config.daemon
        self.workers = d.workers or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ncauth-worker")
        self.inflight = 0
        self.stats = Stats()
        self.allowed_uids = self._allowed_uids(d.allowed_users)
        self.server: asyncio.base_events.Server | None = None
        self.map_server: asyncio.base_events.Server | None = None
        self.map_uids = self._allowed_uids(config.postfix.allowed_users)
        self._stopping = asyncio.Event()
        #: requests in flight per configuration: an old one is closed after its last
        self._using: Counter[Authenticator] = Counter()
        #: open connections per peer uid, capped by [daemon] peer_connections
        self._peer_connections: Counter[int] = Counter()

    # -- setup -----------------------------------------------------------------------

    @staticmethod
    def _authenticator(config: config_mod.Config) -> Authenticator:
        d = config.daemon
        cache = VerifiedCache(d.cache_size, d.cache_max_age) if d.cache and d.cache_size else None
        auth = Authenticator(config, cache=cache)
        auth.store.prepare()  # a missing driver or SQLite file stops the start (or the reload)
        return auth

    def _throttle(self, config: config_mod.Config) -> Throttle | None:
        """The failure throttle for *config*: the one the daemon has, retuned, so that a
        reload (SIGHUP) forgets no counter; a new one only when it was off."""
        d = config.daemon
        if not d.throttle:
            return None
        settings = {
            "window": d.throttle_window,
            "ip_failures": d.throttle_ip_failures,
            "user_failures": d.throttle_user_failures,
            "ipv6_prefix": d.throttle_ipv6_prefix,
            "exempt": _network_test(d.throttle_exempt_networks),
        }
        if self.throttle is None:
            return Throttle(**settings)  # type: ignore[arg-type]
        self.throttle.configure(**settings)  # type: ignore[arg-type]
        return self.throttle

    @staticmethod
    def _allowed_uids(names: tuple[str, ...]) -> set[int]:
        """Numeric uids for the allowed peers; names that do not exist are skipped (and
        logged), the daemon's own uid is always allowed."""
        uids = {os.getuid()}
        for name in names:
            try:
                uids.add(int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid)
            except KeyError:
                log.logger.warning("[daemon] allowed_users: no such user %r, skipped", name)
        return uids

    def listening_socket(self) -> socket.socket:
        """The socket systemd passed (LISTEN_FDS), else a new one at ``[daemon] socket``."""
        if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) >= 1:
            for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                os.environ.pop(var, None)
            sock = socket.socket(fileno=3)
            log.logger.info("listening on the socket systemd passed (%s)", sock.getsockname())
            return sock
        path = self.config.daemon.socket
        if not path:
            raise ConfigError(f"{self.config.path}: [daemon] socket: missing (and no socket from systemd)")
        return self._bind(path, self.config.daemon.socket_group, "[daemon]")

    def _bind(self, path: str, group: str, section: str) -> socket.socket:
        """A new listening socket at *path*, mode 0660 (group *group* when set), after
        making sure no live daemon answers there."""
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                if _answers(path):
                    raise ConfigError(
                        f"{path}: another ncauth serve is answering there; stop it first "
                        f"(or give this one another {section} socket)"
                    )
                os.unlink(path)  # a stale socket from an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise ConfigError(_bind_problem(path, section, exc)) from None
        finally:
            os.umask(old_umask)
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                sock.close()
                raise ConfigError(
                    f"{self.config.path}: {section} socket_group: no such group {group!r}"
                ) from None
        os.chmod(path, 0o660)
        sock.listen(128)
        log.logger.info("listening on %s (mode 0660%s)", path, f", group {group}" if group else "")
        return sock

    # -- serving ---------------------------------------------------------------------

    def map_socket(self) -> socket.socket | None:
        """The Postfix maps' socket at ``[postfix] socket``, if set."""
        p = self.config.postfix
        return self._bind(p.socket, p.socket_group, "[postfix]") if p.socket else None

    async def run(self, sock: socket.socket | None = None, map_sock: socket.socket | None = None) -> None:
        """Serve until SIGTERM/SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        sock = sock or self.listening_socket()
        self.server = await asyncio.start_unix_server(
            self._connection, sock=sock, limit=MAX_LINE, backlog=128
        )
        map_sock = map_sock or self.map_socket()
        if map_sock is not None:
            self.map_server = await asyncio.start_unix_server(
                self._map_connection, sock=map_sock, backlog=128
            )
        _sd_notify("READY=1")
        log.logger.info(
            "serving with %d workers, queue %d, cache %s",
            self.workers,
            self.config.daemon.queue,
            "on" if self.auth.cache is not None else "off",
        )
        await self._stopping.wait()
        _sd_notify("STOPPING=1")
        log.logger.info("stopping: draining %d request(s)", self.inflight)
        self.server.close()
        if self.map_server is not None:
            self.map_server.close()
        deadline = loop.time() + self.config.daemon.drain_timeout
        while self.inflight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.auth.store.close()
        log.logger.info("stopped")

    def reload(self) -> None:
        """SIGHUP: read the config again; keep the old one if the new one is broken."""
        _sd_notify("RELOADING=1")
        try:
            config = config_mod.load(self.config.path)
            auth = self._authenticator(config)
        except ConfigError as exc:
            log.logger.error("reload failed, keeping the running configuration: %s", exc)
        else:
            old, self.auth, self.config = self.auth, auth, config
            self.throttle = self._throttle(config)
            self.allowed_uids = self._allowed_uids(config.daemon.allowed_users)
            self.map_uids = self._allowed_uids(config.postfix.allowed_users)
            log.setup(config.log_level)
            if not self._using[old]:
                self._retire(old)  # else the last request still using it does
            log.logger.info("configuration reloaded from %s", config.path)
        _sd_notify("READY=1")

    def _retire(self, auth: Authenticator) -> None:
        """Close the database pool of a configuration that SIGHUP replaced, once no
        request uses it any more."""
        del self._using[auth]
        auth.store.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        counted: int | None = None
        try:
            uid = _peer_uid(writer.get_extra_info("socket"))
            if uid not in self.allowed_uids:
                self.stats.refused_peers += 1
                log.logger.warning("refused a connection from uid %s (not in [daemon] allowed_users)", uid)
                return
            if self._peer_connections[uid] >= self.config.daemon.peer_connections:
                self.stats.refused_peers += 1
                log.logger.warning(
                    "refused a connection from uid %s: it holds %d already ([daemon] peer_connections)",
                    uid,
                    self._peer_connections[uid],
                )
                writer.write(_refusal("too many connections from this user"))
                return
            self._peer_connections[uid] += 1
            counted = uid
            log.logger.debug("connection from uid %s", uid)
            first = await self._readline(reader)
            if first is None:
                return
            if not is_hello(first):
                writer.write(_refusal("expected a VERSION 1 handshake"))
                return
            writer.write(HELLO)
            # While draining, a kept-open connection (a Lua auth-worker's) is closed rather
            # than fed new work: its client retries once on a fresh connection, which the
            # next daemon (or systemd's socket) takes.
            while not self._stopping.is_set() and (line := await self._readline(reader)) is not None:
                if self._stopping.is_set():
                    break
                writer.write(await self._answer(line))
                await asyncio.wait_for(writer.drain(), self.config.daemon.idle_timeout)
        except _LineTooLong:
            writer.write(_refusal(f"line longer than {MAX_LINE} bytes"))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            if counted is not None:
                self._peer_connections[counted] -= 1
            try:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 1)
            except (TimeoutError, ConnectionError, OSError):
                pass

    async def _map_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One of Postfix's socketmap connections (``[postfix] socket``)."""
        uid = _peer_uid(writer.get_extra_info("socket"))
        if uid not in self.map_uids or self._peer_connections[uid] >= self.config.daemon.peer_connections:
            self.stats.refused_peers += 1
            log.logger.warning(
                "refused a Postfix map connection from uid %s (%s)",
                uid,
                "not in [postfix] allowed_users" if uid not in self.map_uids else "[daemon] peer_connections",
            )
            writer.close()
            return
        self._peer_connections[uid] += 1
        try:
            await socketmap.serve_connection(reader, writer, self._map_answer)
        finally:
            self._peer_connections[uid] -= 1

    async def _map_answer(self, request: socketmap.Request) -> socketmap.Reply:
        """``recipients``: does the address have a mailbox here; ``senders``: which login
        names own it. Never NOTFOUND for an outage: Postfix would bounce mail for good."""
        if request.name not in MAPS:
            return socketmap.Reply.perm(f"unknown map {request.name!r} (ncauth serves {', '.join(MAPS)})")
        auth, started = self.auth, time.perf_counter()
        try:
            verdict = await self._in_worker(auth, auth.mailbox_owner, request.key, timeout=MAP_TIMEOUT)
        except _Busy:
            return socketmap.Reply.temp(BUSY)
        except TimeoutError:
            verdict = Verdict(Outcome.TEMPFAIL, f"no answer within {MAP_TIMEOUT:g} s")
        self.stats.record(f"MAP_{verdict.outcome.wire}", time.perf_counter() - started)
        log.logger.debug(
            "postfix %s \"%s\": %s (%s)",
            request.name,
            log.printable(request.key),
            verdict.outcome.value,
            verdict.reason,
        )
        if verdict.outcome is Outcome.TEMPFAIL:
            return socketmap.Reply.temp(verdict.reason)
        if not verdict.ok:
            return socketmap.Reply.notfound()
        if request.name == "senders":
            owners = auth.login_names(verdict)
            # Postfix splits an owner list at commas and white space: a name holding either
            # would make a stranger an owner ("alice smith" -> "alice", "smith@...")
            if any(c.isspace() or c == "," for name in owners for c in name):
                log.logger.warning(
                    "senders: %s has a login name Postfix would split; nobody owns it",
                    log.printable(request.key),
                )
                return socketmap.Reply.notfound()
            return socketmap.Reply.ok(",".join(owners))
        return socketmap.Reply.ok(verdict.user)

    async def _readline(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next complete line, or None at EOF or after idle_timeout."""
        try:
            line = await asyncio.wait_for(reader.readline(), self.config.daemon.idle_timeout)
        except TimeoutError:
            return None
        except (asyncio.LimitOverrunError, ValueError):
            raise _LineTooLong from None
        if not line.endswith(b"\n"):
            return None
        return line

    async def _answer(self, line: bytes) -> bytes:
        """The reply line to one request line. Whatever goes wrong on the way, the client
        gets a TEMPFAIL for its id on this connection, and the decision line logged is the
        answer it got."""
        try:
            request = Request.parse(line)
        except MalformedRequest as exc:
            self.stats.record(Outcome.TEMPFAIL.wire, 0)
            log.logger.warning("%s (request %s)", exc.reason, log.printable(exc.rid, 32))
            return Reply(Outcome.TEMPFAIL.wire, exc.rid, {"reason": exc.reason}).encode()
        rid, extra = request.rid, request.extra
        if request.command == "STATS":
            return Reply(Outcome.OK.wire, rid, {k: str(v) for k, v in self.snapshot().items()}).encode()
        if request.command == "USERS":
            return await self._users(rid)
        rip, service = extra.get("rip", ""), extra.get("service", "")
        log.logger.debug(
            "%s %s login=\"%s\" %s",
            request.command,
            log.printable(rid, 32),
            log.printable(request.user),
            " ".join(f"{k}={log.printable(v, 64)}" for k, v in extra.items()),
        )
        started = time.perf_counter()
        try:
            verdict = await self._verdict(request.user, request.password, rip)
            reply = _reply(rid, verdict)
        except Exception as exc:
            log.logger.error(
                "internal error answering request %s: %s", log.printable(rid, 32), type(exc).__name__
            )
            verdict = Verdict(Outcome.TEMPFAIL, f"internal error ({type(exc).__name__})")
            reply = _reply(rid, verdict)
        seconds = time.perf_counter() - started
        self.stats.record(verdict.outcome.wire, seconds)
        log.verdict(
            verdict, login=request.user, ms=seconds * 1000, service=service, remote_ip=rip, via="daemon"
        )
        return reply

    async def _verdict(self, user: str, password: bytes | None, rip: str) -> Verdict:
        """Throttle, admit, decide in a worker, learn from the outcome."""
        auth = self.auth
        attempt = None
        if self.throttle is not None and password is not None:
            # counted as a failure from now on, until settled: a parallel burst cannot
            # slip past the budget, and every spelling of one account shares it
            admitted = self.throttle.admit(auth.account_key(user), rip)
            if isinstance(admitted, str):
                return Verdict(Outcome.TEMPFAIL, admitted)
            attempt = admitted
        outcome: bool | None = None
        try:
            try:
                verdict = await self._in_worker(auth, self._decide, auth, user, password, rip)
            except _Busy:
                return Verdict(Outcome.TEMPFAIL, BUSY)
            if verdict.outcome is not Outcome.TEMPFAIL:
                outcome = verdict.outcome is Outcome.OK
            return verdict
        finally:
            if attempt is not None:
                attempt.settle(outcome)

    async def _in_worker(
        self, auth: Authenticator, fn: Callable[..., _T], *args: Any, timeout: float | None = None
    ) -> _T:
        """``fn(*args)`` in a worker thread, counted in flight and as a use of *auth* (the
        configuration it decides with) until the worker returns, even when the caller
        stopped waiting (after *timeout*: TimeoutError); _Busy when the workers and the
        queue are full."""
        if self.inflight >= self.workers + self.config.daemon.queue:
            self.stats.busy += 1
            raise _Busy
        self.inflight += 1
        self._using[auth] += 1

        def release(done: asyncio.Future[_T]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved here, also when nobody waits for it any more
            self.inflight -= 1
            self._using[auth] -= 1
            if auth is not self.auth and not self._using[auth]:
                self._retire(auth)

        future = asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        future.add_done_callback(release)
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def _users(self, rid: str) -> bytes:
        """USERS: a Listed line per account, then ``OK count=N``; a TEMPFAIL alone when
        the list cannot be had, so that an outage never reads as "no accounts". Counted
        as a request, kept out of the latency figures (those are the logins')."""
        started = time.perf_counter()
        try:
            names = await self._in_worker(self.auth, self.auth.accounts)
            listed = b"".join(Listed(rid, name).encode() for name in names)
        except _Busy:
            why = BUSY
        except Exception as exc:
            why = str(exc) if isinstance(exc, NcauthError) else f"internal error ({type(exc).__name__})"
        else:
            self.stats.verdicts[Outcome.OK.wire] += 1
            log.logger.info(
                "USERS %s: %d account(s) listed, ms=%.0f",
                log.printable(rid, 32),
                len(names),
                (time.perf_counter() - started) * 1000,
            )
            return listed + Reply(Outcome.OK.wire, rid, {"count": str(len(names))}).encode()
        self.stats.verdicts[Outcome.TEMPFAIL.wire] += 1
        log.logger.warning("USERS %s: tempfail: %s", log.printable(rid, 32), log.printable(why, 300))
        return Reply(Outcome.TEMPFAIL.wire, rid, {"reason": why}).encode()

    @staticmethod
    def _decide(auth: Authenticator, user: str, password: bytes | None, remote_ip: str) -> Verdict:
        if password is None:
            return auth.lookup(user)
        return auth.authenticate(user, password, remote_ip=remote_ip)

    def snapshot(self) -> dict[str, Any]:
        s, cache = self.stats, self.auth.cache
        return {
            "uptime": int(time.time() - s.started),
            "requests": sum(s.verdicts.values()),
            **{f"verdict_{k.lower()}": s.verdicts.get(k, 0) for k in ("OK", "FAIL", "UNKNOWN", "TEMPFAIL")},
            "busy": s.busy,
            "throttled": self.throttle.throttled if self.throttle is not None else 0,
            "inflight": self.inflight,
            "queue_depth": max(0, self.inflight - self.workers),
            "workers": self.workers,
            "cache_entries": len(cache) if cache is not None else 0,
            "cache_hits": cache.hits if cache is not None else 0,
            "cache_misses": cache.misses if cache is not None else 0,
            "slow_hashes": hashes.slow_hashes.value,
            "latency_p50_ms": round(s.percentile(0.50), 1),
            "latency_p95_ms": round(s.percentile(0.95), 1),
            "latency_p99_ms": round(s.percentile(0.99), 1),
            "db_reconnects": self.auth.store.reconnects,
            "connections": s.connections,
            "refused_peers": s.refused_peers,
        }


def _network_test(networks: tuple[Any, ...]) -> Callable[[str], bool]:
    """Is an address in *networks*? (IPv4-mapped IPv6 counts as IPv4.)"""

    def inside(remote_ip: str) -> bool:
        return bool(networks) and in_networks(remote_ip, networks)

    return inside


def _bind_problem(path: str, section: str, exc: OSError) -> str:
    """Why the socket *path* could not be made, and what to do about it."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        made_by = (
            "ncauth.socket makes /run/ncauth and passes the socket"
            if section == "[daemon]"
            else "RuntimeDirectory= in ncauth.service makes a directory under /run"
        )
        return (
            f"{section} socket {path}: the directory {directory} does not exist (under systemd, "
            f"{made_by}; to run ncauth serve by hand, first: install -d -m 0755 {directory})"
        )
    if isinstance(exc, PermissionError):
        return f"{section} socket {path}: permission denied for uid {os.getuid()} in {directory}"
    return f"{section} socket {path}: cannot create it: {exc.strerror or exc}"


def _answers(path: str) -> bool:
    """Does something accept connections on the Unix socket *path*?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def _reply(rid: str, verdict: Verdict) -> bytes:
    """The protocol line for *verdict* (raises if a field cannot be carried)."""
    if verdict.outcome is Outcome.OK:
        fields = {"user": verdict.user, **{f"userdb_{k}": v for k, v in verdict.fields.items()}}
    else:
        fields = {"reason": verdict.reason}
    return Reply(verdict.outcome.wire, rid, fields).encode()


def _refusal(reason: str) -> bytes:
    """The one line a connection gets before it is closed unserved (id "0")."""
    return Reply(Outcome.TEMPFAIL.wire, "0", {"reason": reason}).encode()


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) what we are doing; silent without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), address)
    except OSError:
        pass


def serve(config_path: str) -> int:
    """``ncauth serve``: load the config and run until stopped. Returns an exit status."""
    log.setup("info")
    try:
        config = config_mod.load(config_path)
        log.setup(config.log_level)
        daemon = Daemon(config)
        sock = daemon.listening_socket()
        map_sock = daemon.map_socket()
    except ConfigError as exc:
        log.logger.error("%s", exc)
        return exc.exit_code
    asyncio.run(daemon.run(sock, map_sock))
    return 0
