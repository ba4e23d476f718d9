"""Password logins for ``safecity serve --basic-auth``: hashed passwords, throttling, audit.

Panel's own basic auth compares plain-text passwords and lets anyone try as
fast as the server answers. Here the users file holds scrypt hashes (written by
``safecity users add``), and the login handler, a subclass of Panel's, refuses
a user name or a client address that failed too often, for a delay that grows
with each lockout, answering exactly like a wrong password without checking
it. Each failure and each lockout goes to the audit log (the name tried and
the address, never the password).

Old users files with plain-text passwords still work, with a warning naming
the users to re-add: refusing them would lock everyone out on upgrade.
"""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment read by the served process (set by ``safecity serve``).
USERS_ENV = "SAFECITY_USERS"
#: The roles the users file may give a user; what each may do is ``safecity.app.access.PERMISSIONS``.
OPERATOR, ANALYST = "operator", "analyst"
ROLES = (OPERATOR, ANALYST)
#: scrypt cost: ~50 ms and 16 MB per check here, the usual interactive-login setting.
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MAX_NAME = 128  # a longer "user name" is cut before it reaches the log


# -- hashes ---------------------------------------------------------------------------

def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n=..,r=..,p=..$<salt>$<hash>`` (base64), with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)
    params = ",".join(f"{k}={v}" for k, v in SCRYPT.items())
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${params}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches the ``hash_password`` string ``stored`` (constant-time compare)."""
    try:
        scheme, params, salt, digest = stored.split("$")
        cost = {k: int(v) for k, v in (kv.split("=") for kv in params.split(","))}
        salt, digest = base64.b64decode(salt), base64.b64decode(digest)
    except ValueError:
        return False
    if scheme != "scrypt" or set(cost) != {"n", "r", "p"}:
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=len(digest),
                         maxmem=256 * 2 ** 20, **cost)
    return hmac.compare_digest(got, digest)


_DUMMY = hash_password(secrets.token_urlsafe(16))  # checked for unknown users: same time either way


# -- the users file ------------------------------------------------------------------

@dataclass
class User:
    hash: str | None = None       # hash_password string
    plain: str | None = None      # legacy plain-text password (old Panel files)
    role: str | None = None


def read_users(path: str | os.PathLike) -> dict[str, User]:
    """The users of a ``--basic-auth`` file: ``{name: {"hash": ..., "role": ...}}``, or the old
    Panel form ``{name: password}``. Refused (naming the file) if others may read it or it is
    not such a mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such credentials file")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{path}: the passwords file is readable by other users "
                              f"(mode {stat.filemode(mode)}); run 'chmod 600 {path}'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON users file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of user name to password hash")
    users = {}
    for name, entry in data.items():
        if isinstance(entry, str):
            users[name] = User(plain=entry)
        elif (isinstance(entry, dict) and isinstance(entry.get("hash"), str)
              and entry["hash"].startswith("scrypt$") and entry.get("role") in (None, *ROLES)):
            users[name] = User(hash=entry["hash"], role=entry.get("role"))
        else:
            raise ValueError(f"{path}: user {name!r}: expected {{\"hash\": \"scrypt$...\", "
                             f"\"role\": one of {', '.join(ROLES)}}} (see 'safecity users add')")
    return users


def plain_text_users(users: dict[str, User]) -> list[str]:
    return sorted(name for name, u in users.items() if u.plain is not None)


def add_user(path: str | os.PathLike, name: str, password: str, role: str | None = None) -> None:
    """Add or replace ``name`` in the users file (created with mode 600, replaced atomically)."""
    path = Path(path)
    if not name or len(name) > MAX_NAME or any(c.isspace() or not c.isprintable() for c in name):
        raise ValueError(f"user name {name!r}: 1 to {MAX_NAME} printable characters, no spaces")
    data = {}
    if path.exists():
        read_users(path)  # refuses an unreadable, world-readable or broken file before touching it
        data = json.loads(path.read_text(encoding="utf-8"))
    data[name] = {"hash": hash_password(password), **({"role": role} if role else {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check(users: dict[str, User], name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s; as slow for an unknown user as for a known one."""
    user = users.get(name)
    if user is None:
        verify_password(password, _DUMMY)
        return False
    if user.hash is not None:
        return verify_password(password, user.hash)
    return hmac.compare_digest(password.encode("utf-8"), (user.plain or "").encode("utf-8"))


# -- throttling ----------------------------------------------------------------------

@dataclass
class _Failures:
    times: collections.deque = field(default_factory=collections.deque)
    lockouts: int = 0
    until: float = 0.0


class LoginThrottle:
    """Failed logins per user name and per client address, over a sliding ``window_s``.

    A key with ``limit`` failures in the window is locked for ``base_delay_s``,
    doubled at each further lockout (up to ``max_delay_s``); after a lock ends,
    one more failure locks it again. An address gets a larger limit than a user
    name: several people share an office's address, and one of them locking
    out their own name must not lock out the others.
    """

    def __init__(self, user_limit: int = 5, address_limit: int = 20, window_s: float = 900,
                 base_delay_s: float = 30, max_delay_s: float = 3600, clock=time.monotonic):
        self.limits = {"user": user_limit, "address": address_limit}
        self.window_s, self.base_delay_s, self.max_delay_s = window_s, base_delay_s, max_delay_s
        self.clock = clock
        self._keys: dict[tuple[str, str], _Failures] = {}

    def locked(self, user: str, address: str) -> float:
        """Seconds until this user name and address may try again (0: now)."""
        now = self.clock()
        waits = [f.until - now for f in (self._keys.get(k) for k in self._pair(user, address)) if f]
        return max([0.0, *waits])

    def failed(self, user: str, address: str) -> list[tuple[str, str, float]]:
        """Count a failure; the ``(kind, key, seconds)`` of each lock it starts."""
        now, started = self.clock(), []
        if len(self._keys) > 10_000:  # names an attacker made up: forget those gone quiet
            self._keys = {k: f for k, f in self._keys.items()
                          if f.until > now or (f.times and f.times[-1] > now - self.window_s)}
        for key in self._pair(user, address):
            f = self._keys.setdefault(key, _Failures())
            while f.times and f.times[0] <= now - self.window_s:
                f.times.popleft()
            if not f.times:
                f.lockouts = 0
            f.times.append(now)
            if len(f.times) >= self.limits[key[0]] and f.until <= now:
                delay = min(self.base_delay_s * 2 ** f.lockouts, self.max_delay_s)
                f.until, f.lockouts = now + delay, f.lockouts + 1
                started.append((*key, delay))
        return started

    def succeeded(self, user: str) -> None:
        self._keys.pop(("user", user), None)

    @staticmethod
    def _pair(user: str, address: str) -> list[tuple[str, str]]:
        return [("user", user), ("address", address)]


# -- the Panel login handler ------------------------------------------------------------

def _audit(store, actor: str, action: str, target: str, details: dict) -> None:
    """To the state store's audit log (if the server has one) and, always, the server log."""
    log.warning("%s: user %r from %s %s", action, actor, target, details or "")
    if store is None:
        return
    try:
        store.state.audit(actor, action, target, details)
    except Exception as exc:  # a full disk must not turn a failed login into a crash
        log.error("could not audit %s: %s", action, exc)


def auth_provider(users_file: str | os.PathLike, throttle: LoginThrottle | None = None):
    """A Panel ``BasicAuthProvider`` whose login checks ``users_file`` with hashes and throttling.

    Login and logout pages are safecity's own, which load nothing from outside.
    """
    import jinja2
    import tornado.escape
    from panel.auth import BasicAuthProvider, BasicLoginHandler, LogoutHandler, _validate_next_url
    from panel.io.state import state
    from tornado.ioloop import IOLoop

    from safecity.app.pages import LOGIN_TEMPLATE, LOGOUT_TEMPLATE
    from safecity.data.store import Store

    throttle = throttle or LoginThrottle()
    # its own threads: a check must not queue behind the sessions' work in the default pool
    checker = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="safecity-login")
    state_dir = os.environ.get("SAFECITY_STATE_DIR")  # opened now: not on the first failure's clock
    store = Store(state_dir) if state_dir else None

    class ThrottledLoginHandler(BasicLoginHandler):
        async def post(self):
            name = self.get_argument("username", "")[:MAX_NAME]
            password = self.get_argument("password", "")
            address = self.request.remote_ip or "unknown"
            ok = False
            if throttle.locked(name, address) <= 0:  # while locked: a failure, password unchecked
                users = read_users(users_file)  # re-read: 'safecity users add' needs no restart
                ok = await IOLoop.current().run_in_executor(checker, check, users, name, password)
                if ok:
                    throttle.succeeded(name)
                else:
                    _audit(store, name, "login_failed", address, {})
                    for kind, key, delay in throttle.failed(name, address):
                        _audit(store, name, "login_locked", address,
                               {"by": kind, "key": key, "seconds": delay})
            if ok:
                self.set_current_user(name)
                self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)))
            else:
                error = tornado.escape.url_escape("Invalid username or password!")
                self.redirect(f"{self.request.path}?error={error}")

    class OfflineLogoutHandler(LogoutHandler):
        pass

    class Provider(BasicAuthProvider):
        @property
        def login_handler(self):
            ThrottledLoginHandler._login_endpoint = self._login_endpoint
            ThrottledLoginHandler._login_template = jinja2.Template(LOGIN_TEMPLATE)
            return ThrottledLoginHandler

        @property
        def logout_handler(self):
            OfflineLogoutHandler._login_endpoint = self._login_endpoint
            OfflineLogoutHandler._logout_template = jinja2.Template(LOGOUT_TEMPLATE)
            return OfflineLogoutHandler

    return Provider()
