"""Where a data source lives: what kind of address it is, and the address fit for a log.

A camera's source is a file, a folder of frames, a stream URL or a device.
Configuration checks the kind before anything opens it; every log line, error
and health table shows the address with its credentials stripped (``redact``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def source_kind(source: str | int | os.PathLike) -> str:
    """``"device"``, ``"stream"``, ``"folder"`` or ``"file"``; a missing path is an error naming it."""
    if isinstance(source, bool):
        raise TypeError(f"a video source is a path, a URL or a device number, not {source!r}")
    if isinstance(source, (int, np.integer)) or (isinstance(source, str) and source.strip().isdigit()):
        return "device"
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    if text.startswith("/dev/"):  # a capture device by path (/dev/video0); may be unplugged now
        return "device"
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if scheme and not isinstance(source, os.PathLike):
        if scheme.group(1).lower() not in STREAM_SCHEMES:
            raise ValueError(f"{redact(text)}: unsupported stream scheme '{scheme.group(1)}' "
                             f"(use one of {', '.join(STREAM_SCHEMES)})")
        return "stream"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    raise FileNotFoundError(f"{path}: no such video file or folder of frames")


#: A URL in free text: a scheme, ``://``, then anything up to white space or a quote.
_URL = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>]*""")

#: ``user:password@`` (or ``token@``) after the scheme; greedy, so a password holding ``@`` goes too.
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")

#: Query or fragment parameters whose value is a secret (or names whom it belongs to).
_SECRET_PARAM = re.compile(
    r"([?&;#][^=&;#]*(?:pass|pwd|token|key|auth|secret|sig|cred|session|user|login)[^=&;#]*=)[^&;#]*",
    re.IGNORECASE)


def redact(text) -> str:
    """``text`` with every URL in it stripped of credentials: fit for logs, errors and health tables.

    A bare source (``rtsp://admin:pw@cam/live``) or a message quoting one (an
    OpenCV or urllib error): the ``user:password@`` part becomes ``***@`` and
    the values of query parameters such as ``pwd=``, ``password=``, ``token=``,
    ``key=``, ``auth=`` or ``user=`` become ``***``. Host, port and path stay,
    so an operator still knows which camera is meant. Works on URLs that
    ``urllib`` rejects (a port that is not a number), which is when errors quote them.
    """
    def clean(match: re.Match) -> str:
        url = _USERINFO.sub(r"\1***@", match.group(0))
        return _SECRET_PARAM.sub(r"\1***", url)

    return _URL.sub(clean, str(text))
