"""A second corpus for bench_vs_nanochat.py, unlike the default one the presets were tuned on: technical
documentation and one-line humour from Debian packages, none of which the default corpus holds.

    python bench/tech_corpus.py WORKDIR              # downloads five .deb files, writes WORKDIR/tech.jsonl
    picochat data build --name tech --input WORKDIR/tech.jsonl

| package | what becomes documents | licence |
|---|---|---|
| linux-doc-6.1 | the kernel's Documentation/*.rst (English; translations left out), a file each | GPL-2.0 |
| git-doc | git's manual pages and guides as text, a file each | GPL-2.0 |
| fortunes, fortunes-min | fortune cookies, forty to a document | public domain / BSD-style |
| debian-handbook | The Debian Administrator's Handbook, English HTML, tags stripped, a chapter each | GPL-2.0+/CC-BY-SA-3.0 |

About 29 M characters. apt-get fetches the versions the machine's Debian archive holds (the manifest of the
built corpus records no versions, so write them down with the results).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

PACKAGES = ("linux-doc-6.1", "git-doc", "debian-handbook", "fortunes", "fortunes-min")
MIN_CHARS = 200  # shorter files are indexes and stubs
FORTUNES_PER_DOC = 40


class HTMLText(HTMLParser):
    """The visible text of an HTML page, a line break at each block element."""

    BLOCKS = {"p", "div", "h1", "h2", "h3", "li", "pre", "tr", "br"}
    HIDDEN = {"script", "style", "head"}

    def __init__(self):
        super().__init__()
        self.parts, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in self.HIDDEN
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        self.hidden -= tag in self.HIDDEN

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)

    def text(self) -> str:
        return re.sub(r"\n\s*\n+", "\n\n", "".join(self.parts))


def unpack(work: Path) -> Path:
    """Download the packages' .deb files into WORK and extract them into WORK/root."""
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=work, check=True)
    for deb in sorted(work.glob("*.deb")):
        subprocess.run(["dpkg", "-x", deb, work / "root"], check=True)
    return work / "root" / "usr" / "share"


def documents(share: Path):
    """(source, text) for every document, in a fixed order."""
    for path in sorted((share / "doc/linux-doc-6.1/Documentation").rglob("*.rst.gz")):
        if "/translations/" not in str(path):
            yield "linux-doc", gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    for path in sorted((share / "doc/git-doc").rglob("*.txt")):
        yield "git-doc", path.read_text("utf-8", "replace")
    for path in sorted(p for p in (share / "games/fortunes").iterdir() if p.is_file() and not p.suffix):
        cookies = [c.strip() for c in path.read_text("utf-8", "replace").split("\n%\n")]
        for i in range(0, len(cookies), FORTUNES_PER_DOC):
            yield "fortunes", "\n\n".join(cookies[i : i + FORTUNES_PER_DOC])
    for path in sorted((share / "doc/debian-handbook/html/en-US").glob("*.html")):
        parser = HTMLText()
        parser.feed(path.read_text("utf-8", "replace"))
        yield "debian-handbook", parser.text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    share = unpack(args.workdir)
    counts: dict[str, int] = {}
    out = args.workdir / "tech.jsonl"
    with open(out.with_suffix(".partial"), "w", encoding="utf-8") as f:
        for source, text in documents(share):
            if len(text := text.strip()) >= MIN_CHARS:
                f.write(json.dumps({"text": text}) + "\n")
                counts[source] = counts.get(source, 0) + len(text)
    out.with_suffix(".partial").replace(out)
    print(f"{out}: " + ", ".join(f"{s} {n:,} characters" for s, n in counts.items()))


if __name__ == "__main__":
    main()
