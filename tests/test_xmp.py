"""XMP merging on bytes: ours added, replaced and removed; a person's keywords and description kept."""

import pytest

from mllm_retrieval.metadata.xmp import XmpError, keywords, merge, normalise, parse

# As exiftool 12.57 writes a sidecar (`exiftool -o x.xmp -XMP-dc:Subject=... ...`), verbatim.
EXIFTOOL_SIDECAR = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='Image::ExifTool 12.57'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>

 <rdf:Description rdf:about=''
  xmlns:dc='http://purl.org/dc/elements/1.1/'>
  <dc:description>
   <rdf:Alt>
    <rdf:li xml:lang='x-default'>Anna at the lake</rdf:li>
   </rdf:Alt>
  </dc:description>
  <dc:subject>
   <rdf:Bag>
    <rdf:li>Holiday</rdf:li>
    <rdf:li>Anna</rdf:li>
   </rdf:Bag>
  </dc:subject>
 </rdf:Description>

 <rdf:Description rdf:about=''
  xmlns:lr='http://ns.adobe.com/lightroom/1.0/'>
  <lr:hierarchicalSubject>
   <rdf:Bag>
    <rdf:li>People|Anna</rdf:li>
   </rdf:Bag>
  </lr:hierarchicalSubject>
 </rdf:Description>

 <rdf:Description rdf:about=''
  xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmlns:darktable='http://darktable.sf.net/'>
  <xmp:Rating>4</xmp:Rating>
  <darktable:history_end>3</darktable:history_end>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>""".encode()


# darktable's style: simple properties as attributes, dc:subject a Seq, its own namespaces.
DARKTABLE_SIDECAR = b"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmp:Rating="1" darktable:xmp_version="5">
   <dc:subject><rdf:Seq><rdf:li>darktable|format|cr2</rdf:li><rdf:li>holiday</rdf:li></rdf:Seq></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>places|holiday</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def items(data: bytes, prefix: str, name: str) -> list[str]:
    from mllm_retrieval.metadata.xmp import _items

    return _items(parse(data), prefix, name)


def description(data: bytes) -> str | None:
    from mllm_retrieval.metadata.xmp import _x_default

    found = _x_default(parse(data))
    return found[2].text if found else None


def ours_gone(data: bytes) -> bool:
    return b"mllmret|" not in data and b"<mllmret:" not in data and b"xmlns:mllmret" not in data


def test_keywords_are_normalised_deduplicated_and_most_frequent_first():
    tiles = [["Sky", "beach "], ["dog", "sky"], ["DOG", "a|b", "\x00"], ["sky"]]
    assert keywords(tiles, 25) == ["sky", "dog", "beach", "a b"]
    assert keywords(tiles, 2) == ["sky", "dog"]
    assert normalise("  Red   Car\x07 ") == "red car"


def test_new_sidecar_then_same_write_is_byte_identical():
    data, change = merge(None, ["Dog", "grass", "dog"], "A dog on grass.")
    assert items(data, "dc", "subject") == ["dog", "grass"]
    assert items(data, "lr", "hierarchicalSubject") == ["mllmret|dog", "mllmret|grass"]
    assert description(data) == "A dog on grass."
    assert change.added == ("dog", "grass") and change.description == "added"
    again, change = merge(data, ["dog", "grass"], "A dog on grass.")
    assert again == data and not change.added and not change.removed and change.description is None


def test_a_persons_keywords_description_and_other_properties_stay():
    data, change = merge(EXIFTOOL_SIDECAR, ["anna", "lake", "water"], "Two people by a lake.")
    assert items(data, "dc", "subject") == ["Holiday", "Anna", "lake", "water"]  # "anna" is already there
    assert items(data, "lr", "hierarchicalSubject") == [
        "People|Anna", "mllmret|anna", "mllmret|lake", "mllmret|water"]
    assert description(data) == "Anna at the lake" and change.description is None
    assert b"<xmp:Rating>4</xmp:Rating>" in data and b"<darktable:history_end>3<" in data
    assert change.kept == ("Holiday", "Anna")

    data, change = merge(data, ["lake", "boat"])  # a later write replaces only ours
    assert items(data, "dc", "subject") == ["Holiday", "Anna", "lake", "boat"]
    assert change.added == ("boat",) and change.removed == ("anna", "water")

    data, change = merge(data, [], remove=True)
    assert items(data, "dc", "subject") == ["Holiday", "Anna"]  # "Anna" was the person's all along
    assert items(data, "lr", "hierarchicalSubject") == ["People|Anna"]
    assert ours_gone(data) and description(data) == "Anna at the lake"


def test_a_darktable_sidecar_keeps_its_attributes_and_prefixes():
    data, _ = merge(DARKTABLE_SIDECAR, ["beach", "holiday"], "Sea.")
    assert items(data, "dc", "subject") == ["darktable|format|cr2", "holiday", "beach"]
    assert b'xmp:Rating="1"' in data and b'darktable:xmp_version="5"' in data and description(data) == "Sea."
    data, _ = merge(data, [], remove=True)
    assert items(data, "dc", "subject") == ["darktable|format|cr2", "holiday"] and ours_gone(data)
    assert items(data, "lr", "hierarchicalSubject") == ["places|holiday"] and description(data) is None


def test_our_description_is_replaced_and_removed_but_a_persons_edit_is_kept():
    data, _ = merge(None, ["dog"], "first caption")
    data, change = merge(data, ["dog"], "second caption")
    assert description(data) == "second caption" and change.description == "replaced"
    edited = data.replace(b">second caption</rdf:li>", b">My dog Rex</rdf:li>")
    data, change = merge(edited, ["dog"], "third caption")
    assert description(data) == "My dog Rex" and change.description is None
    data, change = merge(data, [], remove=True)
    assert description(data) == "My dog Rex" and ours_gone(data)


def test_our_description_record_rewritten_as_an_attribute_by_exiv2_is_still_ours():
    data, _ = merge(None, ["dog"], "A dog.")
    compact = data.replace(b' rdf:about="">', b' rdf:about="" mllmret:description="A dog.">').replace(
        b"<mllmret:description>A dog.</mllmret:description>", b"")  # as exiv2 (digiKam, --embed) writes it
    assert b"<mllmret:description>" not in compact and description(compact) == "A dog."
    assert merge(compact, [], remove=True)[0] is None  # ours, so it goes


def test_remove_from_a_sidecar_that_only_we_wrote_leaves_nothing():
    data, _ = merge(None, ["dog"], "A dog.")
    assert merge(data, [], remove=True)[0] is None


@pytest.mark.parametrize("data, reason", [
    (b"\x89PNG not xml at all", "not XML"),
    (b"<html><body/></html>", "not an XMP packet"),
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "DOCTYPE"),
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "without rdf:RDF"),
    (b" " * (5 << 20), "too large"),
])
def test_what_is_not_an_xmp_packet_is_refused(data, reason):
    with pytest.raises(XmpError, match=reason):
        merge(data, ["dog"])
