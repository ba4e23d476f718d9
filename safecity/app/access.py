"""Who may do what on the dashboards, and refusing to serve them openly.

Authentication is Panel's own (``panel serve --basic-auth`` or ``--oauth-provider``);
this module only maps an authenticated user to a role and a role to what it may
do: an ``operator`` may dispatch units, an ``analyst`` may tune alarms. Nobody,
whatever the role, gets unblurred video: there is no control that unblurs.

Serving on a non-loopback address with no authentication is refused, by
``safecity serve`` before anything starts and by ``guard()`` inside each app
(so a bare ``panel serve --address 0.0.0.0`` serves no page either), unless
explicitly allowed (``--allow-unauthenticated`` / ``SAFECITY_ALLOW_UNAUTHENTICATED=1``).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from pathlib import Path

from safecity.app.login import ANALYST, OPERATOR, ROLES, USERS_ENV, read_users

log = logging.getLogger(__name__)

#: Unauthenticated serving on the loopback address is one person at their own
#: machine trying the demo: they are both operator and analyst.
LOCAL = "local"
PERMISSIONS = {OPERATOR: {"dispatch"}, ANALYST: {"tune"}, LOCAL: {"dispatch", "tune"}}

#: Environment set by ``safecity serve`` and read inside the served apps.
ROLES_ENV = "SAFECITY_ROLES"
ALLOW_ENV = "SAFECITY_ALLOW_UNAUTHENTICATED"
ADDRESS_ENV = "SAFECITY_SERVE_ADDRESS"
LOCAL_ROLE_ENV = "SAFECITY_LOCAL_ROLE"


class OpenServingError(RuntimeError):
    """Serving beyond this machine with no authentication, and not explicitly allowed."""


# -- roles ------------------------------------------------------------------------

def read_roles(path: str | os.PathLike) -> dict[str, str]:
    """``{user: role}`` from a YAML or JSON file mapping each user to ``operator`` or ``analyst``.

    The file is either the mapping itself or ``{"users": {...}}``. An unknown
    role is refused naming the file and the user.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if isinstance(data, dict) and isinstance(data.get("users"), dict):
        data = data["users"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of user name to role, got {type(data).__name__}")
    roles = {}
    for user, role in data.items():
        if role not in ROLES:
            raise ValueError(f"{path}: user {user!r} has role {role!r}; "
                             f"a role is one of {', '.join(ROLES)}")
        roles[str(user)] = role
    return roles


def role_of(user: str | None, roles: dict[str, str], groups=()) -> str | None:
    """The role of an authenticated user: from the roles file, else from OAuth groups named like a role."""
    if user in roles:
        return roles[user]
    for group in groups or ():
        if group in ROLES:
            return group
    return None


def can_dispatch(role: str | None) -> bool:
    return "dispatch" in PERMISSIONS.get(role, ())


def can_tune(role: str | None) -> bool:
    return "tune" in PERMISSIONS.get(role, ())


def _configured_roles() -> dict[str, str]:
    """Roles from the users file (``safecity users add --role``), then the roles file, which wins."""
    users = os.environ.get(USERS_ENV)
    roles = {name: u.role for name, u in read_users(users).items() if u.role} if users else {}
    path = os.environ.get(ROLES_ENV)
    return {**roles, **(read_roles(path) if path else {})}


def _groups(user_info: dict | None) -> list[str]:
    groups = (user_info or {}).get("groups") or []
    return [groups] if isinstance(groups, str) else list(groups)


def current_user() -> str | None:
    """The authenticated user of this Panel session, or None (notebook, or serving without auth)."""
    import panel as pn

    try:
        return pn.state.user
    except Exception:  # outside a server request there are no cookies to read
        return None


def current_role() -> str | None:
    """The role of this session's user.

    Unauthenticated (a notebook, or the demo on localhost): ``$SAFECITY_LOCAL_ROLE``,
    by default ``local``, which may both dispatch and tune. Authenticated: the
    role from the roles file (``$SAFECITY_ROLES``) or OAuth groups; None if the
    user has none, which ``authorize`` refuses.
    """
    import panel as pn

    user = current_user()
    if user is None:
        return os.environ.get(LOCAL_ROLE_ENV, LOCAL)
    return role_of(user, _configured_roles(), _groups(pn.state.user_info))


def session_note(role: str | None, action: str) -> str:
    """One line for the page: who is signed in, and why a control is disabled (``action``: dispatch or tune)."""
    user = current_user()
    who = f"Signed in as {user} ({role or 'no role'})" if user else f"Not signed in ({role})"
    if action in PERMISSIONS.get(role, ()):
        return f"{who}."
    needed = OPERATOR if action == "dispatch" else ANALYST
    return f"{who}: only an {needed} may {action}."


def authorize(user_info: dict | None) -> bool:
    """Panel ``authorize_callback``: only users with a role get a page."""
    if not user_info:
        return False
    user = user_info.get("user") or user_info.get("username") or user_info.get("email")
    role = role_of(user, _configured_roles(), _groups(user_info))
    if role is None:
        log.warning("access refused: user %r has no role", user)
    return role is not None


# -- exposure -------------------------------------------------------------------

def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; an empty address (all interfaces) is not."""
    if address is None:
        return True  # Bokeh's default binds to localhost only
    address = address.strip().strip("[]")
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # '', '0.0.0.0' parse fine; a host name is assumed reachable from outside


def check_exposure(address: str | None, authenticated: bool, allow_unauthenticated: bool) -> None:
    """Refuse (``OpenServingError``) to serve on ``address`` to the network with no authentication."""
    if authenticated or is_loopback(address) or allow_unauthenticated:
        return
    raise OpenServingError(
        f"refusing to serve on address {address!r} without authentication: anyone who "
        f"reaches this machine could dispatch units. Configure --basic-auth or "
        f"--oauth-provider, serve on 127.0.0.1, or pass --allow-unauthenticated "
        f"(set {ALLOW_ENV}=1 for a bare 'panel serve') if you really mean it.")


def _argv_option(argv: list[str], name: str) -> str | None:
    """The value of ``--name X`` or ``--name=X`` in a command line, else None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def listening_addresses() -> list[str]:
    """The addresses this process listens on (TCP), read from the operating system.

    Bokeh replaces ``sys.argv`` before an app runs, so a bare ``panel serve
    --address 0.0.0.0`` is only seen this way. Empty if psutil is missing.
    """
    try:
        import psutil
    except ImportError:
        return []
    return [c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN]


def served_address(argv: list[str] | None = None) -> str | None:
    """The first non-loopback address this server listens on, else the loopback one, else None.

    Sources: the sockets of this process, what ``safecity serve`` set
    (``$SAFECITY_SERVE_ADDRESS``) and an ``--address`` on the command line.
    """
    found = listening_addresses()
    if ADDRESS_ENV in os.environ:
        found.append(os.environ[ADDRESS_ENV])
    given = _argv_option(sys.argv if argv is None else argv, "--address")
    if given is not None:
        found.append(given)
    return next((a for a in found if not is_loopback(a)), found[0] if found else None)


def _allowed_unauthenticated() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in {"1", "true", "yes"}


def _refuse_everyone(user_info) -> bool:
    return False


def guard() -> None:
    """Called at the top of every served app: no page for an open server, no page for a user without a role.

    Outside a server (a notebook) it does nothing. Unauthenticated, it refuses
    when the server binds beyond loopback or the request comes from another
    machine; authenticated, it makes Panel refuse users without a role.
    """
    import panel as pn

    request = getattr(getattr(pn.state.curdoc, "session_context", None), "request", None)
    if request is None:
        return
    if current_user() is not None:
        pn.config.authorize_callback = authorize  # this session's check, run after the script
        return
    remote = getattr(request, "remote_ip", None)
    address = served_address()
    if not is_loopback(remote) and is_loopback(address):
        address = remote  # a proxy forwards strangers to a loopback server: as open as binding wide
    try:
        check_exposure(address, authenticated=False, allow_unauthenticated=_allowed_unauthenticated())
    except OpenServingError as exc:
        log.error("%s", exc)
        pn.config.authorize_callback = _refuse_everyone  # a 403 page instead of an empty one
        raise


# -- credentials -----------------------------------------------------------------

def check_credentials_file(path: str | os.PathLike) -> dict[str, str]:
    """Users of a ``--basic-auth`` file (``safecity users add``), refused if others may read it.

    Even hashes must stay private (``chmod 600``): they can be attacked offline.
    Values are never logged or returned.
    """
    return {user: "***" for user in read_users(path)}


def panel_command(apps: list[str], address: str, port: int, basic_auth: str | None = None,
                  cookie_secret: str | None = None, oauth_provider: str | None = None,
                  extra: list[str] | None = None) -> list[str]:
    """The ``panel serve`` command line ``safecity serve`` runs.

    ``basic_auth`` (a users file) is checked by ``safecity.app.auth_module``, not by
    Panel's plain-text basic auth; the file's path goes in ``$SAFECITY_USERS``.
    """
    cmd = [sys.executable, "-m", "panel", "serve", *apps, "--address", address, "--port", str(port)]
    if basic_auth:
        cmd += ["--auth-module", str(Path(__file__).with_name("auth_module.py"))]
    if oauth_provider:
        cmd += ["--oauth-provider", oauth_provider]
    if cookie_secret:
        cmd += ["--cookie-secret", cookie_secret]
    return cmd + list(extra or [])
