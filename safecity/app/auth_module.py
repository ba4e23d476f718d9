"""The Bokeh ``--auth-module`` that ``safecity serve --basic-auth`` passes to ``panel serve``.

It plugs ``safecity.app.login``'s provider (hashed passwords, throttling, audit) into
the server in place of Panel's plain-text basic auth; the users file is named by
``$SAFECITY_USERS``.
"""
import os

from safecity.app.login import USERS_ENV, auth_provider

_provider = auth_provider(os.environ[USERS_ENV])
get_user = _provider.get_user
login_url = _provider.login_url
LoginHandler = _provider.login_handler
logout_url = _provider.logout_url
LogoutHandler = _provider.logout_handler
