"""Download one large file over HTTP(S): Google Drive's confirmation page, resume, limits.

Why our own code (standard library only): the official weights live on Google Drive, which
answers a large file with an HTML "can't scan this file for viruses" page first. Two variants are
handled: a form (``action=https://drive.usercontent.google.com/download`` with hidden ``id``,
``export``, ``confirm``, ``uuid`` inputs; older pages: a ``/uc?...&confirm=TOKEN`` link) and a
``download_warning`` cookie whose value is the token. The file is written to ``DEST.part`` and
renamed when complete; a dropped connection is retried with an HTTP ``Range`` request from where
it stopped, and a later run resumes the same ``.part`` file.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

from .errors import DownloadError

CHUNK = 1 << 16
MAX_PAGE_BYTES = 1 << 20  # an HTML confirmation page is a few KB
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) mfs-fast"


@dataclass(frozen=True)
class Fetch:
    """How to fetch: the limits and the retry policy."""

    max_bytes: int
    timeout: float = 30.0  # seconds, for connecting and for each read
    retries: int = 4  # attempts after a dropped connection, each resuming where it stopped
    backoff: float = 1.0  # seconds before retry k: backoff * k
    progress: bool = True
    label: str = "download"
    manual_hint: str = ""  # what to do by hand when this cannot work (appended to errors)


def fetch(url: str, dest: Path, how: Fetch) -> Path:
    """Download ``url`` to ``dest`` (through ``dest.part``, resumed if present); returns ``dest``."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    last_error = ""
    for attempt in range(how.retries + 1):
        if attempt:
            time.sleep(how.backoff * attempt)
        try:
            _fetch_once(opener, url, part, how)
            part.replace(dest)
            return dest
        except _Transient as e:
            last_error = str(e)
        except DownloadError as e:
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(f"{e}" + (f" ({_mb(kept)} kept in {part}: a rerun resumes)" if kept else "")) from None
    kept = part.stat().st_size if part.exists() else 0
    raise DownloadError(f"{how.label}: the connection kept dropping ({last_error}); "
                        f"{_mb(kept)} kept in {part}: run the same command again to resume{how.manual_hint}")


class _Transient(Exception):
    """A failure worth retrying (connection dropped or stalled mid-transfer, server error)."""


def _fetch_once(opener: urllib.request.OpenerDirector, url: str, part: Path, how: Fetch) -> None:
    offset = part.stat().st_size if part.exists() else 0
    response = _open_file(opener, url, offset, how)
    with response:
        total, offset = _plan(response, offset, part, how)
        bar = _progress(how, total, offset)
        try:
            with part.open("ab" if offset else "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Transient(f"{type(e).__name__}: {e}") from None
                    if not chunk:
                        break
                    offset += len(chunk)
                    if offset > how.max_bytes:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise DownloadError(f"{how.label}: the file grew past the {_mb(how.max_bytes)} limit; "
                                            f"refusing it{how.manual_hint}")
                    out.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and offset < total:
        raise _Transient(f"the server closed the connection at {_mb(offset)} of {_mb(total)}")


def _plan(response, offset: int, part: Path, how: Fetch) -> tuple[int | None, int]:
    """(total size if known, where writing starts) for this response; checks the size limit."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            part.unlink(missing_ok=True)
            raise _Transient("the server resumed from the wrong place; starting over")
        total = int(match.group(3)) if match.group(3) != "*" else None
    else:
        offset = 0  # the server sent the whole file: the partial file is rewritten
        total = length
    if total is not None and total > how.max_bytes:
        raise DownloadError(f"{how.label}: the server offers {_mb(total)}, over the {_mb(how.max_bytes)} limit; "
                            f"refusing it{how.manual_hint}")
    return total, offset


def _open_file(opener: urllib.request.OpenerDirector, url: str, offset: int, how: Fetch):
    """The response carrying the file itself, past any confirmation pages."""
    jar = next(h.cookiejar for h in opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
    for _ in range(3):
        response = _request(opener, url, offset, how)
        if not response.headers.get_content_type().startswith("text/html"):
            return response
        with response:
            page = response.read(MAX_PAGE_BYTES).decode("utf-8", "replace")
            page_url = response.url
        next_url = confirmation_url(page, page_url, jar)
        if next_url is None:
            title = _title(page)
            raise DownloadError(f"{how.label}: the server sent a web page instead of the file"
                                f"{f' ({title!r})' if title else ''}: the file may be over its download quota, "
                                f"moved or private{how.manual_hint}")
        url = next_url
    raise DownloadError(f"{how.label}: the server kept asking for confirmation{how.manual_hint}")


def _request(opener: urllib.request.OpenerDirector, url: str, offset: int, how: Fetch):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    host = urllib.parse.urlsplit(url).hostname or url
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=how.timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416:  # the partial file does not fit the file on the server any more
            raise _Transient("the partial download does not match the server's file; starting over") from None
        if e.code >= 500 or e.code == 429:
            raise _Transient(f"HTTP {e.code} from {host}") from None
        raise DownloadError(f"{how.label}: {host} answered HTTP {e.code} ({e.reason}){how.manual_hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise DownloadError(f"{how.label}: {host} did not answer within {how.timeout:g} s: check the "
                                f"internet connection{how.manual_hint}") from None
        raise DownloadError(f"{how.label}: cannot reach {host} ({_reason(reason)}): check the internet "
                            f"connection{how.manual_hint}") from None


class _FormFinder(HTMLParser):
    """Collects each form's action and hidden inputs, and every link that carries ``confirm=``."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and "confirm=" in a.get("href", ""):
            self.links.append(a["href"])


def confirmation_url(page: str, page_url: str, jar: http.cookiejar.CookieJar) -> str | None:
    """Where Drive's "download anyway" leads from ``page``, or None when the page offers no way on."""
    finder = _FormFinder()
    finder.feed(page)
    candidates = []
    for action, fields in finder.forms:
        if "confirm" in fields or "id" in fields:
            joined = urllib.parse.urljoin(page_url, unescape(action) or page_url)
            candidates.append(f"{joined.split('?')[0]}?{urllib.parse.urlencode(fields)}")
    candidates += [urllib.parse.urljoin(page_url, unescape(href)) for href in finder.links]
    token = next((c.value for c in jar if c.name.startswith("download_warning")), None)
    if token:
        candidates.append(_with_query(page_url, confirm=token))
    https = page_url.startswith("https:")
    for candidate in candidates:
        if candidate.startswith("https:") or (not https and candidate.startswith("http:")):
            return candidate  # never from https down to plain http
    return None


def _with_query(url: str, **extra: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(extra)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _title(page: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", page, re.S | re.I)
    return " ".join(unescape(match.group(1)).split())[:120] if match else ""


def _reason(reason: object) -> str:
    return getattr(reason, "strerror", None) or str(reason)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _progress(how: Fetch, total: int | None, done: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=how.label,
                disable=None if how.progress else True, file=sys.stderr, leave=False)  # None: only on a terminal
