"""XMP packets: merge our keywords (and caption) into a sidecar's text, keeping what a person wrote.

Ours are recognisable: every keyword we write is also `mllmret|KEYWORD` in lr:hierarchicalSubject (one
click filters or removes them in Lightroom, digiKam, darktable), and a private `mllmret:` property
records which dc:subject entries and which dc:description we added, so that a later write or
`--remove` touches only those. Pure functions on bytes; files are sidecars.py's job.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import MllmretError

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "mllmret": "https://mllm-retrieval.invalid/xmp/1.0/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

PARENT = "mllmret"  # the parent keyword in lr:hierarchicalSubject
MAX_PACKET_BYTES = 4 << 20  # a sidecar larger than this is not ours to rewrite
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_HEAD = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_TAIL = '\n<?xpacket end="w"?>\n'


class XmpError(MllmretError):
    """A sidecar that cannot be merged (not XML, not XMP, too large); the file is left alone."""


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def clean(text: str) -> str:
    """Text that XML can hold: characters XML 1.0 forbids removed, ends stripped."""
    return _NOT_XML_CHAR.sub("", text).strip()


def normalise(tag: str) -> str:
    """A keyword as we write it: lowercase, single spaces, no '|' (the hierarchy separator)."""
    return " ".join(clean(tag).replace("|", " ").lower().split())


def keywords(tag_lists: Iterable[Iterable[str]], max_tags: int) -> list[str]:
    """Keywords of one image from its tiles' tag lists (full image first): deduplicated, normalised,
    the tags on the most tiles first, ties in the order first seen; at most max_tags."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for tags in tag_lists:
        for tag in dict.fromkeys(filter(None, map(normalise, tags))):
            counts[tag] += 1
            first.setdefault(tag, len(first))
    return sorted(counts, key=lambda t: (-counts[t], first[t]))[:max_tags]


@dataclass(frozen=True)
class Change:
    """What a merge does to one sidecar."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    description: str | None = None  # "added", "replaced" or "removed"
    kept: tuple[str, ...] = ()  # a person's keywords, left as they were

    def describe(self) -> str:
        """One line: +added -removed, and what happened to the description."""
        parts = [f"+{t}" for t in self.added] + [f"-{t}" for t in self.removed]
        if self.description:
            parts.append(f"description {self.description}")
        return " ".join(parts) or "rewritten (same keywords)"


def new_packet() -> ET.Element:
    """An empty x:xmpmeta with one rdf:Description."""
    root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "mllmret"})
    rdf = ET.SubElement(root, _q("rdf", "RDF"))
    ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    return root


def parse(data: bytes) -> ET.Element:
    """The root of an XMP packet (x:xmpmeta or rdf:RDF); XmpError when it is not one."""
    if len(data) > MAX_PACKET_BYTES:
        raise XmpError(f"too large for an XMP sidecar ({len(data):,} bytes, limit {MAX_PACKET_BYTES:,})")
    if b"<!DOCTYPE" in data.upper():
        raise XmpError("has a DOCTYPE, which XMP never has")
    try:
        events = ET.iterparse(io.BytesIO(data), events=("start-ns",))
        prefixes = [ns for _, ns in events]
        root = events.root  # type: ignore[attr-defined]
    except ET.ParseError as e:
        raise XmpError(f"not XML ({e})") from None
    if root.tag not in (_q("x", "xmpmeta"), _q("rdf", "RDF"), "{adobe:ns:meta/}xapmeta"):
        raise XmpError(f"not an XMP packet (its root is {root.tag})")
    if _rdf(root) is None:
        raise XmpError("an XMP packet without rdf:RDF")
    for host in _rdf(root).iter(_q("rdf", "Description")):  # exiv2 (digiKam, --embed) writes our simple
        for key in [k for k in host.attrib if k.startswith(f"{{{NS['mllmret']}}}")]:  # record as attributes
            ET.SubElement(host, key).text = host.attrib.pop(key)
    for prefix, uri in prefixes:  # keep the file's own prefixes (ET would write ns0, ns1, ...)
        ours = prefix in NS or uri in NS.values()
        if prefix and not ours and not re.fullmatch(r"ns\d+|xml.*", prefix):
            ET.register_namespace(prefix, uri)
    return root


def serialize(root: ET.Element) -> bytes:
    """The packet as UTF-8 bytes, indented, wrapped in xpacket processing instructions."""
    ET.indent(root, space=" ")
    return (_HEAD + ET.tostring(root, encoding="unicode") + _TAIL).encode("utf-8")


def _rdf(root: ET.Element) -> ET.Element | None:
    return root if root.tag == _q("rdf", "RDF") else root.find(_q("rdf", "RDF"))


def _properties(root: ET.Element, prefix: str, name: str) -> list[tuple[ET.Element, ET.Element]]:
    """(rdf:Description, property element) for every occurrence of the property."""
    rdf = _rdf(root)
    tag = _q(prefix, name)
    return [(d, p) for d in rdf.iter(_q("rdf", "Description")) for p in d.findall(tag)]


def _container(prop: ET.Element) -> ET.Element | None:
    return next((c for c in prop if c.tag in (_q("rdf", "Bag"), _q("rdf", "Seq"), _q("rdf", "Alt"))), None)


def _items(root: ET.Element, prefix: str, name: str) -> list[str]:
    return [t for _, prop in _properties(root, prefix, name) for t in _items_of(prop)]


def _description_host(root: ET.Element) -> ET.Element:
    """The first rdf:Description (one is made when there is none)."""
    rdf = _rdf(root)
    host = rdf.find(_q("rdf", "Description"))
    if host is None:
        host = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    return host


def _set_bag(root: ET.Element, prefix: str, name: str, keep, add: list[str], ensure: bool = False) -> None:
    """Drop the items `keep(text)` refuses from every occurrence of a bag property; append `add` to
    the first one (made in the first rdf:Description when missing); remove the property when empty,
    unless `ensure` (then it stays, even empty)."""
    found = _properties(root, prefix, name)
    if not found and (add or ensure):
        prop = ET.SubElement(_description_host(root), _q(prefix, name))
        ET.SubElement(prop, _q("rdf", "Bag"))
        found = [(None, prop)]
    for i, (host, prop) in enumerate(found):
        box = _container(prop)
        if box is None:
            continue
        for li in [li for li in box if li.tag == _q("rdf", "li") and not keep((li.text or "").strip())]:
            box.remove(li)
        if i == 0:
            for text in add:
                ET.SubElement(box, _q("rdf", "li")).text = text
        if len(box) == 0 and not (ensure and i == 0):
            (host if host is not None else _description_host(root)).remove(prop)


def _x_default(root: ET.Element) -> tuple[ET.Element, ET.Element, ET.Element] | None:
    """(host, dc:description, its x-default rdf:li), if any."""
    for host, prop in _properties(root, "dc", "description"):
        box = _container(prop)
        for li in box if box is not None else ():
            if li.get(XML_LANG) == "x-default":
                return host, prop, li
    return None


def _ours(root: ET.Element, name: str) -> tuple[ET.Element, ET.Element] | None:
    """(host, element) of one of our own `mllmret:` record properties, if present."""
    return next(iter(_properties(root, "mllmret", name)), None)


def merge(data: bytes | None, tags: list[str], caption: str | None = None, remove: bool = False,
          elsewhere: Iterable[str] = ()) -> tuple[bytes | None, Change]:
    """A sidecar's new bytes with our keywords `tags` (and `caption` as dc:description when no
    person's description is there), or with ours taken out (`remove`). A person's keywords and
    descriptions stay; so do `elsewhere`, a person's keywords kept elsewhere (IPTC): never recorded
    as ours. None for the bytes: no property is left (the file may go)."""
    root = parse(data) if data is not None else new_packet()
    tags = [] if remove else list(dict.fromkeys(t for t in map(normalise, tags) if t))
    caption = None if remove or not caption else clean(caption) or None
    hier = _items(root, "lr", "hierarchicalSubject")
    before = [h.split("|", 1)[1] for h in hier if h.startswith(PARENT + "|")]
    record = _ours(root, "subjects")
    if record is not None:
        ours = {t.casefold() for t in _items_of(record[1])}
    else:  # no record (never written, or lost): ours are our hierarchy's leaves no other hierarchy has
        theirs = {h.rsplit("|", 1)[-1].casefold() for h in hier if not h.startswith(PARENT + "|")}
        ours = {t.casefold() for t in before} - theirs
    kept = [s for s in _items(root, "dc", "subject") if s.casefold() not in ours]
    kept_folded = {s.casefold() for s in (*kept, *elsewhere)}
    added = [t for t in tags if t.casefold() not in kept_folded]
    _set_bag(root, "dc", "subject", lambda s: s.casefold() not in ours, added)
    _set_bag(root, "lr", "hierarchicalSubject", lambda h: not h.startswith(PARENT + "|"),
             [f"{PARENT}|{t}" for t in tags])
    _set_bag(root, "mllmret", "subjects", lambda _: False, added, ensure=bool(tags))
    how = _merge_description(root, caption, remove)
    change = Change(tuple(t for t in tags if t not in before), tuple(t for t in before if t not in tags),
                    how, tuple(kept))
    return (serialize(root) if _has_properties(root) else None), change


def _items_of(prop: ET.Element) -> list[str]:
    box = _container(prop)
    return [(li.text or "").strip() for li in (box if box is not None else ()) if li.tag == _q("rdf", "li")]


def _merge_description(root: ET.Element, caption: str | None, remove: bool) -> str | None:
    """Put `caption` in dc:description unless a person's is there; replace or remove only ours.
    Returns what happened: "added", "replaced", "removed" or None."""
    record = _ours(root, "description")
    current = _x_default(root)
    ours = record is not None and current is not None and (current[2].text or "") == (record[1].text or "")
    if remove or (current is not None and not ours):  # ours goes, or a person's description stays
        if record is not None:
            record[0].remove(record[1])
        if not (remove and ours):
            return None
        host, prop, li = current
        _container(prop).remove(li)
        if len(_container(prop)) == 0:
            host.remove(prop)
        return "removed"
    if caption is None:
        return None
    if current is None:
        prop = ET.SubElement(_description_host(root), _q("dc", "description"))
        alt = ET.SubElement(prop, _q("rdf", "Alt"))
        li, how = ET.SubElement(alt, _q("rdf", "li"), {XML_LANG: "x-default"}), "added"
    else:
        li = current[2]
        how = None if li.text == caption else "replaced"
    li.text = caption
    if record is None:
        ET.SubElement(_description_host(root), _q("mllmret", "description")).text = caption
    else:
        record[1].text = caption
    return how


def _has_properties(root: ET.Element) -> bool:
    """Whether any rdf:Description holds a property (an element, or an attribute besides rdf:about)."""
    for d in _rdf(root).iter(_q("rdf", "Description")):
        if len(d) or any(k != _q("rdf", "about") for k in d.attrib):
            return True
    return len(_rdf(root)) > len(_rdf(root).findall(_q("rdf", "Description")))


def canonical(data: bytes | None) -> bytes | None:
    """A packet as `merge` writes it when it changes nothing (to tell a real change from re-serialising)."""
    return None if data is None else serialize(parse(data))


def our_subjects(data: bytes | None) -> list[str]:
    """The keywords our private record says we added to a packet's dc:subject (none for a bad packet)."""
    try:
        record = _ours(parse(data), "subjects") if data else None
    except XmpError:
        return []
    return _items_of(record[1]) if record is not None else []


def person_text(data: bytes) -> tuple[list[str], str, str]:
    """(keywords, title, description) a person wrote in an XMP packet; ours (the `mllmret:` record, the
    mllmret| hierarchy) are left out, so reading back a sidecar we wrote finds only theirs."""
    root = parse(data)
    record = _ours(root, "subjects")
    ours = {t.casefold() for t in _items_of(record[1])} if record is not None else set()
    hier = _items(root, "lr", "hierarchicalSubject")
    theirs = {h.rsplit("|", 1)[-1].casefold() for h in hier if not h.startswith(PARENT + "|")}
    ours |= {h.split("|", 1)[1].casefold() for h in hier if h.startswith(PARENT + "|")} - theirs
    words = [clean(s) for s in _items(root, "dc", "subject") if s.casefold() not in ours]
    words += [clean(h.rsplit("|", 1)[-1]) for h in hier if not h.startswith(PARENT + "|")]
    title = next((clean(t) for t in _items(root, "dc", "title") if clean(t)), "")
    mine = _ours(root, "description")
    description = next((clean(d) for d in _items(root, "dc", "description")
                        if clean(d) and (mine is None or d != (mine[1].text or ""))), "")
    return list(dict.fromkeys(w for w in words if w)), title, description
