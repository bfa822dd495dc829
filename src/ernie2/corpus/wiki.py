"""MediaWiki XML dumps (plain or .bz2): articles with markup stripped, paragraphs and case kept,
link anchors kept as spans."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from ernie2.corpus.document import Document, Span
from ernie2.corpus.readers import BadInput, open_binary, reader
from ernie2.corpus.text import make_sentences

# Sections after which an article holds no more prose.
END_SECTIONS = frozenset(["references", "see also", "external links", "further reading",
                          "notes", "bibliography", "sources", "footnotes", "citations",
                          "notes and references", "works cited", "primary sources"])
_DROPPED_LINK_PREFIXES = ("file:", "image:", "category:", "media:", "wikipedia:", "help:",
                          "portal:", "template:", "special:", "user:", "talk:", "wp:")
_INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]+)?:")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_DROPPED_ELEMENTS = re.compile(
    r"<(math|gallery|timeline|source|syntaxhighlight|pre|code|score|imagemap|table|div "
    r"class=\"references[^\"]*\")[^>]*>.*?</\1\s*>", re.S | re.I)
_TAG = re.compile(r"</?[a-zA-Z][^>]*?/?>")
_BOLD_ITALIC = re.compile(r"'{2,}")
_EXTERNAL = re.compile(r"\[(?:https?|ftp)://[^\s\]]+(?:\s+([^\]]*))?\]")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_EMPTY_PARENS = re.compile(r"\(\s*[,;:]*\s*\)|\(\s*[,;]\s*|\s+([,.;:])(?=\s|$)")
_SPACES = re.compile(r"[ \t\u00a0]+")
_LINK_TRAIL = re.compile(r"[a-z]+")


def _strip_nested(text: str, open_: str, close: str) -> str:
    """Remove balanced open_ ... close regions (templates {{ }}, tables {| |})."""
    out, depth, i, n = [], 0, 0, len(text)
    lo, lc = len(open_), len(close)
    while i < n:
        if text.startswith(open_, i):
            depth += 1
            i += lo
        elif depth and text.startswith(close, i):
            depth -= 1
            i += lc
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def _find_link_end(text: str, i: int) -> int:
    """Index after the ]] closing the [[ at i (nested links inside captions allowed), or -1."""
    depth, n = 0, len(text)
    while i < n:
        if text.startswith("[[", i):
            depth += 1
            i += 2
        elif text.startswith("]]", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return -1


def _resolve_links(text: str) -> tuple[str, list[Span]]:
    """Replace [[target|anchor]] by its anchor (plus a letter trail, as MediaWiki renders
    [[dog]]s), drop file/category/interlanguage links; anchors become spans: entities when
    they start with a capital or a digit, phrases when lower-case and several words long."""
    out: list[str] = []
    spans: list[Span] = []
    length = 0
    i = 0
    while True:
        j = text.find("[[", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        length += j - i
        end = _find_link_end(text, j)
        if end < 0:
            out.append(text[j:])
            break
        inner = text[j + 2:end - 2]
        target, _, anchor = inner.partition("|")
        t = target.strip().lower()
        if t.startswith(_DROPPED_LINK_PREFIXES) or _INTERLANGUAGE.match(t):
            i = end
            continue
        anchor = (anchor or target).strip()
        if "[[" in anchor:
            anchor, _ = _resolve_links(anchor)
        anchor = anchor.lstrip(":")
        trail = _LINK_TRAIL.match(text, end)
        if trail:
            anchor += trail.group(0)
            end = trail.end()
        if anchor:
            if anchor[0].isupper() or anchor[0].isdigit():
                spans.append(Span(length, length + len(anchor), "entity"))
            elif " " in anchor:
                spans.append(Span(length, length + len(anchor), "phrase"))
            out.append(anchor)
            length += len(anchor)
        i = end
    return "".join(out), spans


def clean_wikitext(raw: str) -> list[tuple[str, list[Span]]]:
    """Article wikitext -> prose paragraphs with their link-anchor spans (character offsets)."""
    return [p for _heading, paras in wikitext_sections(raw) for p in paras]


def wikitext_sections(raw: str) -> list[tuple[str | None, list[tuple[str, list[Span]]]]]:
    """Article wikitext -> its top-level sections in order, each (heading, prose paragraphs):
    the lead first (heading None), then every level-2 section ("== History =="), deeper
    headings kept inside theirs; up to the first end section (references, see also, ...).
    Sections without prose are left out."""
    text = _COMMENT.sub("", raw)
    text = _REF.sub("", text)
    text = _DROPPED_ELEMENTS.sub("", text)
    text = _strip_nested(text, "{{", "}}")
    text = _strip_nested(text, "{|", "|}")
    text = html.unescape(text)
    text = _COMMENT.sub("", _REF.sub("", text))  # escaped markup shows up after unescaping
    text = _TAG.sub("", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _EXTERNAL.sub(lambda m: m.group(1) or "", text)
    sections: list[tuple[str | None, list[tuple[str, list[Span]]]]] = [(None, [])]
    paragraphs = sections[0][1]
    block: list[str] = []

    def flush():
        if block:
            para = _SPACES.sub(" ", " ".join(block))
            para = _EMPTY_PARENS.sub(lambda m: m.group(1) or "", para)
            para = _SPACES.sub(" ", para).strip()
            block.clear()
            if len(para) >= 40 and sum(c.isalpha() for c in para) > len(para) // 2:
                paragraphs.append(_resolve_links(para))

    for line in text.split("\n"):
        s = line.strip()
        head = _HEADING.match(s)
        if head:
            flush()
            heading = head.group(2).strip()
            if heading.lower() in END_SECTIONS:
                break
            if len(head.group(1)) == 2:
                sections.append((_resolve_links(heading)[0] or None, []))
                paragraphs = sections[-1][1]
            continue
        if not s or s[0] in "*#:;|!{}" or s.startswith(("[[File:", "[[Image:", "[[Category:")):
            flush()  # lists, indents, table rows and lone media lines are not prose
            continue
        if s.startswith("#redirect"):
            return []
        block.append(s)
    flush()
    return [(h, paras) for h, paras in sections if paras]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parsed(fh, path) -> Iterator:
    """iterparse's events; malformed XML is BadInput naming the file, line and column."""
    try:
        yield from ET.iterparse(fh, events=("end",))
    except ET.ParseError as exc:
        line, col = exc.position
        raise BadInput(f"{path}:{line}: not MediaWiki XML (column {col}: {exc})") from None


@reader("wiki")
def read_wiki(path, lang="en", on_error="raise", stats=None, start=None, sections=False,
              **_) -> Iterator:
    """Articles (namespace 0, no redirects) of a MediaWiki XML dump; with `sections`, every
    top-level section of an article is a document of its own, titled "Article: Heading" (the
    lead keeps the article's title), its source naming the article and the section. The
    position counts articles (`doc`) and, inside one, sections (`section`): resuming re-parses
    the dump up to it."""
    skip = int((start or {}).get("doc", 0))
    skip_sections = int((start or {}).get("section", 0))
    lg = "en" if lang == "auto" else lang
    count = 0
    with open_binary(path) as fh:
        title = ns = None
        redirect = False
        for _event, el in _parsed(fh, path):
            tag = _local(el.tag)
            if tag == "title":
                title = el.text
            elif tag == "ns":
                ns = el.text
            elif tag == "redirect":
                redirect = True
            elif tag == "text":
                body = el.text or ""
                el.clear()
                if ns == "0" and not redirect and title:
                    count += 1
                    if count <= skip:
                        continue
                    parts = wikitext_sections(body)
                    if not sections:
                        parts = [(None, [p for _h, ps in parts for p in ps])]
                    docs = []
                    for heading, paragraphs in parts:
                        paras = []
                        for text, spans in paragraphs:
                            sents = make_sentences(text, lg, None, spans)
                            if sents:
                                paras.append(sents)
                        if paras:
                            docs.append((heading, paras))
                    if not docs:
                        if stats is not None:
                            stats["skipped_empty_documents"] += 1
                        continue
                    if not sections:
                        yield Document(docs[0][1], title, f"{path}#{title}", lg), {"doc": count}
                        continue
                    first = skip_sections if count == skip + 1 else 0
                    for k in range(first, len(docs)):
                        heading, paras = docs[k]
                        name = f"{title}: {heading}" if heading else title
                        pos = ({"doc": count - 1, "section": k + 1} if k + 1 < len(docs)
                               else {"doc": count})
                        yield Document(paras, name, f"{path}#{title}#{k}", lg), pos
            elif tag == "page":
                title = ns = None
                redirect = False
                el.clear()
