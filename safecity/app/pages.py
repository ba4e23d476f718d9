"""The offline pages ``safecity serve`` shows in place of Panel's: login, logout, refusal, index.

Panel's own pages load fonts, logos and icons from Google and the HoloViz CDN;
these load nothing, so they work in an operations room with no internet.
"""
from __future__ import annotations

import os
from pathlib import Path

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>safecity · {title}</title>
<link rel="icon" href="data:,">
<style>
body {{ font-family: sans-serif; background: #f3f5f9; display: flex; justify-content: center;
       align-items: center; min-height: 100vh; margin: 0; }}
.box {{ background: white; padding: 2em 2.5em; border-radius: 6px; box-shadow: 0 1px 6px #0002;
       display: flex; flex-direction: column; gap: 0.8em; min-width: 18em; }}
h1 {{ color: #1f4e9c; font-size: 1.3em; margin: 0 0 0.3em; }}
input {{ padding: 0.5em; font-size: 1em; }}
button {{ padding: 0.6em; font-size: 1em; background: #1f4e9c; color: white; border: 0;
         border-radius: 4px; cursor: pointer; }}
.errormessage {{ color: #b00; font-weight: bold; margin: 0; }}
</style></head>
"""

LOGIN_TEMPLATE = _HEAD.format(title="login") + """<body>
<form class="login-form box" action=".{{ login_endpoint }}" method="post">
<h1>safecity · sign in</h1>
<p class="errormessage">{{ errormessage|escape }}</p>
<input name="username" type="text" autocapitalize="off" autocorrect="off" placeholder="username"
       aria-label="username" required>
<input name="password" type="password" placeholder="password" aria-label="password" required>
<button type="submit">Log in</button>
</form></body></html>
"""

#: Jinja2, as Panel renders it (``LOGIN_ENDPOINT``).
LOGOUT_TEMPLATE = _HEAD.format(title="signed out") + """<body>
<form class="box" action=".{{ LOGIN_ENDPOINT }}" method="get">
<h1>safecity · signed out</h1><p>You are signed out.</p>
<button type="submit">Sign in again</button>
</form></body></html>
"""

#: Jinja2, as Panel renders a refused authorization (``error_type``, ``error``, ``error_msg``).
ERROR_TEMPLATE = _HEAD.format(title="not authorized") + """<body><div class="box">
<h1>safecity · {{ error_type|default("Error", true)|escape }}</h1>
<p class="errormessage">{{ error|escape }}</p>
<p>{{ error_msg|escape }}</p>
<p><a href="./logout">Sign out</a></p>
</div></body></html>
"""

#: A Tornado template, as Bokeh renders the index of the served apps (``items``: slug, title).
INDEX_TEMPLATE = _HEAD.format(title="dashboards") + """<body><div class="box">
<h1>safecity · dashboards</h1>
<ul class="apps">{% for slug, title in items %}
<li><a href=".{{ slug }}">{{ title }}</a></li>{% end %}
</ul></div></body></html>
"""


def write_templates(folder: str | os.PathLike) -> dict[str, Path]:
    """The offline pages as files, for ``panel serve --index``, ``--auth-template``,
    ``--basic-login-template`` and ``--logout-template``."""
    pages = {"index": INDEX_TEMPLATE, "auth": ERROR_TEMPLATE, "login": LOGIN_TEMPLATE,
             "logout": LOGOUT_TEMPLATE}
    paths = {}
    for name, text in pages.items():
        paths[name] = Path(folder) / f"safecity_{name}.html"
        paths[name].write_text(text, encoding="utf-8")
    return paths
