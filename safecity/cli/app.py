"""Serving the dashboards (``safecity serve``) and their users (``safecity users``)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from safecity.cli.root import main



@main.command()
@click.argument("apps", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs authentication.")
@click.option("--port", type=click.IntRange(0, 65535), default=5006, show_default=True)
@click.option("--basic-auth", "basic_auth", type=click.Path(dir_okay=False),
              help="Panel basic-auth passwords: a JSON file of user -> password, mode 600.")
@click.option("--oauth-provider", default=None,
              help="Panel OAuth provider (github, google, azure, generic...); key and secret "
                   "from PANEL_OAUTH_KEY / PANEL_OAUTH_SECRET.")
@click.option("--roles", "roles_path", type=click.Path(exists=True, dir_okay=False),
              help="YAML or JSON file mapping each user to operator or analyst.")
@click.option("--allow-unauthenticated", is_flag=True,
              help="Serve beyond loopback with no login (logged, and audited if a state dir is set).")
@click.option("--allow-websocket-origin", "origins", multiple=True,
              help="host[:port] browsers may connect from (passed to panel serve).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Operators' store for the audit record (default $SAFECITY_STATE_DIR); with "
                   "--live, where everything received is kept.")
@click.option("--live", is_flag=True,
              help="Run the city live from its sources (the ingest API) instead of the demo replay.")
@click.option("--ingest-tokens", "tokens_path", type=click.Path(exists=True, dir_okay=False),
              help="With --live: the sources' token file ('safecity ingest token'); without it "
                   "there is no ingest API.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="The city directory giving roads, zones and stations (default $SAFECITY_DATA_DIR).")
@click.option("--state", "state_spec", default=None, metavar="URL",
              help="Operational state (incidents, unit status, audit): sqlite (default, in "
                   "--state-dir) or postgresql://user@host/db.")
def serve(apps, address, port, basic_auth, oauth_provider, roles_path, allow_unauthenticated,
          origins, state_dir, live, tokens_path, data_dir, state_spec) -> None:
    """Serve dashboards with Panel, refusing to serve beyond this machine without a login.

    With --live, sources feed the city through the ingest API under /api/v1/ on the
    same address (see docs/live.md); without, the operator's page replays the demo city.
    """
    import logging
    import os
    import secrets

    from safecity.app import access, login
    from safecity.app.pages import write_templates
    from safecity.data.store import os_user

    authenticated = bool(basic_auth or oauth_provider)
    try:
        access.check_exposure(address, authenticated, allow_unauthenticated)
        if basic_auth:
            users = login.read_users(basic_auth)
            if not roles_path and not any(u.role for u in users.values()):
                raise ValueError("--basic-auth needs --roles (or roles given by 'safecity users "
                                 "add --role'): a user without a role gets no page")
            plain = login.plain_text_users(users)
            if plain:
                click.echo(f"WARNING: {basic_auth} stores the passwords of {', '.join(plain)} in "
                           f"plain text; re-add them with 'safecity users add NAME --file "
                           f"{basic_auth}' to store a hash instead", err=True)
        if roles_path:
            access.read_roles(roles_path)
        if tokens_path:
            if not live:
                raise ValueError("--ingest-tokens needs --live: the replay takes no sources")
            from safecity.ingest.tokens import TokenBook

            TokenBook.load(tokens_path)  # refuse a bad or world-readable file before serving
        if live and not (state_dir or os.environ.get("SAFECITY_STATE_DIR")):
            raise ValueError("--live needs --state-dir: what sources send must outlive the server")
    except (access.OpenServingError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    env = dict(os.environ)
    for name in ("SAFECITY_LIVE", "SAFECITY_INGEST_TOKENS"):
        env.pop(name, None)
    if live:
        env["SAFECITY_LIVE"] = "1"
    if tokens_path:
        env["SAFECITY_INGEST_TOKENS"] = str(Path(tokens_path).resolve())
    if data_dir:
        env["SAFECITY_DATA_DIR"] = str(Path(data_dir).resolve())
    if state_spec:
        env["SAFECITY_STATE"] = state_spec
    env[access.ADDRESS_ENV] = address
    env.pop(access.ALLOW_ENV, None)
    if roles_path:
        env[access.ROLES_ENV] = str(Path(roles_path).resolve())
    if basic_auth:
        env[login.USERS_ENV] = str(Path(basic_auth).resolve())
    if state_dir:  # the audit log of logins and dispatches
        env["SAFECITY_STATE_DIR"] = str(Path(state_dir).resolve())
    if authenticated and not (env.get("PANEL_COOKIE_SECRET") or env.get("BOKEH_COOKIE_SECRET")):
        # in the environment, not on the command line where ps shows it; logins end on restart
        env["PANEL_COOKIE_SECRET"] = secrets.token_urlsafe(32)
    if allow_unauthenticated and not authenticated and not access.is_loopback(address):
        env[access.ALLOW_ENV] = "1"
        logging.basicConfig()
        logging.getLogger("safecity.app.access").warning(
            "SERVING WITHOUT AUTHENTICATION on %s:%s: anyone who reaches it may dispatch units",
            address, port)
        state_dir = state_dir or os.environ.get("SAFECITY_STATE_DIR")
        if state_dir:
            from safecity.data.store import Store

            store = Store(state_dir)
            store.state.audit(os_user(), "serve_unauthenticated",
                              f"{address}:{port}", {"apps": list(apps)})
            store.state.close()
    extra = [arg for origin in origins for arg in ("--allow-websocket-origin", origin)]
    if tokens_path:
        extra += ["--plugins", "safecity.app.api"]
    from safecity.app import warmup

    # the city read, its models fitted, the engine started, datashader compiled, before
    # "Bokeh app running at:" ($SAFECITY_WARMUP=0: the first session does it)
    extra += ["--setup", str(warmup.setup_script())]
    import tempfile

    pages = write_templates(tempfile.mkdtemp(prefix="safecity-pages-"))  # offline pages
    extra += ["--index", str(pages["index"]), "--auth-template", str(pages["auth"])]
    if oauth_provider:
        extra += ["--logout-template", str(pages["logout"])]
    cmd = access.panel_command(list(apps), address, port, basic_auth=basic_auth,
                               oauth_provider=oauth_provider, extra=extra)
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)


@main.group()
def users() -> None:
    """Dashboard logins for 'safecity serve --basic-auth': users, password hashes, roles."""


@users.command("add")
@click.argument("name")
@click.option("--file", "users_file", required=True, type=click.Path(dir_okay=False),
              help="The users file (JSON, created with mode 600).")
@click.option("--role", type=click.Choice(["operator", "analyst"]), default=None,
              help="The user's role (else from 'serve --roles').")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_add(name, users_file, role, password_stdin) -> None:
    """Add NAME (or change their password) with an scrypt hash of a password asked twice."""
    from safecity.app import login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.ClickException("the password must have at least 8 characters")
    try:
        login.add_user(users_file, name, password, role)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{users_file}: {name} added" + (f" as {role}" if role else ""))
