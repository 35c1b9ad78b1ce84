"""Turn the English Wikipedia excerpt shipped inside gensim's wheel into plain-text splits.

The demo model is trained on real English that is available offline: gensim 4.4.0's wheel carries
`gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2`
(206 pages of the 2017-era English Wikipedia; CC BY-SA 3.0). Fetch the wheel without installing it:

    pip download --no-deps gensim==4.4.0 -d /tmp/gensim
    python scripts/demo_model/prepare_text.py /tmp/gensim/gensim-4.4.0-*.whl --out /tmp/wiki

Writes train.txt, heldout.txt and calib.txt to --out. Articles are assigned to a split by a hash of
their title, so the held-out articles were never seen in training. heldout.txt and calib.txt are
the files shipped in samples/data/ (calib.txt is a slice of the training split: calibration data is
allowed to overlap training, evaluation data is not).
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import html
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
HELDOUT_PERCENT = 12


def strip_nested(text: str, open_mark: str, close_mark: str) -> str:
    """Remove balanced open_mark ... close_mark spans ({{templates}}, {| tables |})."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_mark, i):
            depth, i = depth + 1, i + len(open_mark)
        elif depth and text.startswith(close_mark, i):
            depth, i = depth - 1, i + len(close_mark)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def wikitext_to_plain(text: str) -> str:
    text = html.unescape(text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = strip_nested(text, "{{", "}}")
    text = strip_nested(text, "{|", "|}")
    text = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", text)
    text = re.sub(r"\[\[([^\]|]*)\|([^\]]*)\]\]", r"\2", text)
    text = re.sub(r"\[\[([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[https?://\S+\]", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("|", "!", "*", "#", ":", ";", "__"))
             or ln.startswith(("* ", "# "))]
    return "\n".join(lines)


def read_articles(wheel: Path):
    with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as raw:
        xml = bz2.decompress(raw.read())
    root = ElementTree.fromstring(xml)
    ns = {"mw": root.tag.split("}")[0].strip("{")}
    for page in root.iterfind("mw:page", ns):
        title = page.findtext("mw:title", namespaces=ns)
        if page.findtext("mw:ns", namespaces=ns) != "0" or page.find("mw:redirect", ns) is not None:
            continue
        body = wikitext_to_plain(page.findtext("mw:revision/mw:text", default="", namespaces=ns))
        if len(body) > 2000:
            yield title, body


def split_of(title: str) -> str:
    bucket = int(hashlib.sha256(title.encode()).hexdigest(), 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", type=Path, help="gensim-4.4.0 wheel file")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--calib-chars", type=int, default=120_000)
    args = p.parse_args(argv)
    splits = {"train": [], "heldout": []}
    for title, body in read_articles(args.wheel):
        splits[split_of(title)].append(f"{title}\n\n{body}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, articles in splits.items():
        (args.out / f"{name}.txt").write_text("\n".join(articles), encoding="utf-8")
        print(f"{name}: {len(articles)} articles, {sum(map(len, articles)):,} characters")
    calib = "\n".join(splits["train"])[: args.calib_chars]
    (args.out / "calib.txt").write_text(calib[: calib.rfind("\n") + 1], encoding="utf-8")


if __name__ == "__main__":
    main()
