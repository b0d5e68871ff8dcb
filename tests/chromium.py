"""Pages opened in a real headless Chromium, with no network: every request it makes goes to
a local proxy that records it (``--proxy-server``, loopback included), and host names resolve
to nothing (``--host-resolver-rules``). A test then fails when the proxy saw anything. The
browser's own services (component updates, sign-in, network time) are switched off or
pointed at a closed local port, so what reaches the proxy is what the pages asked for
(``test_a_page_with_an_external_reference_is_caught`` checks that such requests do arrive).

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it). Without a binary the tests
skip and say why, unless ``EVAL_ENCODER_REQUIRE_CHROMIUM`` is set (as CI sets it): then they
fail.
"""
from __future__ import annotations

import os
import shutil
import socketserver
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")
QUIET = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", "--disable-extensions", "--disable-default-apps",
         "--disable-domain-reliability", "--disable-client-side-phishing-detection",
         "--metrics-recording-only", "--mute-audio",
         # the browser's own traffic, which would reach the proxy whatever the page does: the
         # network clock, and the component updater and sign-in pointed at a closed local port
         "--disable-features=OptimizationHints,Translate,MediaRouter,NetworkTimeServiceQuerying",
         "--component-updater=url-source=http://0.0.0.0:9/", "--gaia-url=http://0.0.0.0:9/"]


def chromium_binary() -> str:
    """The chromium binary, or skip (fail under EVAL_ENCODER_REQUIRE_CHROMIUM) saying why."""
    found = next((p for p in map(shutil.which, NAMES) if p), None)
    if found:
        return found
    why = (f"no chromium binary on PATH ({', '.join(NAMES)}); install Debian's chromium "
           "(apt-get install chromium), as .ci/run does")
    if os.environ.get("EVAL_ENCODER_REQUIRE_CHROMIUM"):
        pytest.fail(f"EVAL_ENCODER_REQUIRE_CHROMIUM is set and {why}")
    pytest.skip(why)


class _Recorder(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(65537).decode("latin-1").strip()
        self.server.seen.append(line or f"connection from {self.client_address}")
        self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")


class Proxy:
    """A local TCP server that records the first line of every connection made to it."""

    def __init__(self):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
        self.server.daemon_threads = True
        self.server.seen = []
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def seen(self) -> List[str]:
        return list(self.server.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """Headless Chromium runs of pages from disk, all through one recording proxy."""

    def __init__(self, binary: str, profile: Path):
        self.binary, self.profile, self.proxy = binary, profile, Proxy()

    def _run(self, page: Path, *flags: str, size: str = "1400,1000") -> str:
        cmd = [self.binary, *QUIET, f"--user-data-dir={self.profile}",
               f"--proxy-server=http://127.0.0.1:{self.proxy.port}",
               "--proxy-bypass-list=<-loopback>",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               f"--window-size={size}", "--virtual-time-budget=3000", *flags,
               Path(page).resolve().as_uri()]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stderr[-3000:]}"
        return out.stdout

    def screenshot(self, page: Path, png: Path, size: str = "1400,1000") -> Path:
        self._run(page, f"--screenshot={png}", size=size)
        assert png.is_file(), f"chromium wrote no screenshot {png}"
        return png

    def dom(self, page: Path) -> str:
        """The page's DOM after its scripts ran (``--dump-dom``)."""
        return self._run(page, "--dump-dom")


# ----------------------------------------------------------------------------- reading a DOM
class Node:
    def __init__(self, tag: str, attrs: Dict[str, Optional[str]], parent: Optional["Node"]):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], ""

    def find_all(self, tag: str, **attrs: str) -> List["Node"]:
        out = []
        for child in self.children:
            if child.tag == tag and all(attrs[k] in (child.attrs.get(k) or "").split()
                                        or child.attrs.get(k) == attrs[k] for k in attrs):
                out.append(child)
            out += child.find_all(tag, **attrs)
        return out

    def content(self) -> str:
        return (self.text + "".join(c.content() for c in self.children)).strip()


VOID = {"meta", "img", "br", "hr", "input", "link", "source", "col", "area", "base", "wbr"}


class _Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag):
        at = self.at
        while at.parent is not None and at.tag != tag:
            at = at.parent
        if at.parent is not None:
            self.at = at.parent

    def handle_data(self, data):
        if self.at.children:  # text after a child: keep it in reading order
            tail = Node("#text", {}, self.at)
            tail.text = data
            self.at.children.append(tail)
        else:
            self.at.text += data


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def table_rows(table: Node) -> List[List[str]]:
    """The texts of every row's cells, body rows only, in document order (of a table or of
    one of its tbody)."""
    bodies = [table] if table.tag == "tbody" else table.find_all("tbody")
    return [[c.content() for c in tr.children if c.tag in ("td", "th")]
            for body in bodies for tr in body.find_all("tr")]


def links(root: Node) -> List[str]:
    """Every href and src in the document."""
    return [n.attrs[a] for tag in ("a", "img", "link", "script") for n in root.find_all(tag)
            for a in ("href", "src") if n.attrs.get(a)]
