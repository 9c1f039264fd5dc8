"""parse_output on answers shaped like what LLaVA, Qwen2-VL and SmolVLM really write to the tagging prompt."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mllm_retrieval.capture.parsing import MAX_TAG_WORDS, Parsed, parse_output


def test_requested_format_keeps_tag_order_and_caption():
    out = parse_output(
        "Tags: cat, sofa, living room, lamp, window\n"
        "Caption: A tabby cat sleeps on a grey sofa next to a floor lamp."
    )
    assert out.tags == ("cat", "sofa", "living room", "lamp", "window")
    assert out.caption == "A tabby cat sleeps on a grey sofa next to a floor lamp."


def test_llava_paragraph_ignoring_the_format_keeps_the_whole_text_as_caption():
    answer = (
        "The image features a black and white cat lying on a red couch in a living room. "
        "The cat appears relaxed, with its eyes closed.\nThere is a remote control nearby."
    )
    out = parse_output(answer)
    assert out.caption.startswith("The image features a black and white cat")
    assert "There is a remote control nearby." in out.caption
    assert all(len(t.split()) <= MAX_TAG_WORDS for t in out.tags)


@pytest.mark.parametrize("answer", [
    "**Tags:** cat, sofa, cushion, window\n\n**Caption:** A ginger cat naps on a sofa by the window.",
    "**Tags**: Cat, Sofa, Cushion, Window\n**Caption**: A ginger cat naps on a sofa by the window.",
    "### Tags\n- cat\n- sofa\n- cushion\n- window\n\n### Caption\nA ginger cat naps on a sofa by the window.",
    "**Tags:**\n* cat\n* sofa\n* cushion\n* window\n\n"
    "**Caption:**\nA ginger cat naps on a sofa by the window.",
    "## Description\nA ginger cat naps on a sofa by the window.\n\n## Keywords\n1. cat\n2. sofa\n3. cushion\n"
    "4. window",
])
def test_llava_markdown_bold_headings_and_bullets(answer):
    out = parse_output(answer)
    assert out.tags == ("cat", "sofa", "cushion", "window")
    assert out.caption == "A ginger cat naps on a sofa by the window."
    assert "*" not in out.caption and "#" not in out.caption


def test_qwen_numbered_list_then_summary():
    out = parse_output(
        "The image shows a cozy indoor scene:\n\n"
        "1. **Cat**: A tabby cat is curled up on the cushion.\n"
        "2. **Sofa**: A grey fabric sofa with two pillows.\n"
        "3. **Floor Lamp**: A tall lamp stands in the corner.\n\n"
        "Overall, the image depicts a quiet living room with a cat resting."
    )
    assert out.tags == ("cat", "sofa", "floor lamp")
    assert "the image depicts a quiet living room with a cat resting." in out.caption
    assert "**" not in out.caption


def test_qwen_json_in_fenced_block():
    out = parse_output(
        "Here is the description in the requested format:\n"
        "```json\n{\n  \"tags\": [\"Cat\", \"sofa\", \"lamp\"],\n"
        "  \"caption\": \"A tabby cat sleeps on a sofa.\"\n}\n```\n"
        "Let me know if you need {anything} else."
    )
    assert out.tags == ("cat", "sofa", "lamp")
    assert out.caption == "A tabby cat sleeps on a sofa."


def test_qwen_json_with_keywords_string_and_description():
    out = parse_output('{"Keywords": "beach, sunset, ocean",\n'
                       ' "Description": "The sun sets over a calm ocean."}')
    assert out.tags == ("beach", "sunset", "ocean")
    assert out.caption == "The sun sets over a calm ocean."


def test_json_ignores_nested_tag_objects_and_joins_caption_list():
    out = parse_output('{"tags": [{"name": "cat"}, "sofa", 3], "caption": ["A cat.", "On a sofa."]}')
    assert out.tags == ("sofa", "3")
    assert out.caption == "A cat. On a sofa."


def test_smolvlm_short_sentence_with_leading_space():
    out = parse_output(" The image shows a cat.")
    assert out == Parsed((), "The image shows a cat.")


@pytest.mark.parametrize("answer", ["Tags: cat, dog", "tags: cat, dog", "TAGS - cat, dog",
                                    "Tags:\n- cat\n- dog"])
def test_smolvlm_tags_only(answer):
    out = parse_output(answer)
    assert out.tags == ("cat", "dog")
    assert "tags" not in out.caption.lower()


def test_lowercase_and_dash_labels_with_caption():
    assert parse_output("tags: cat, dog, park\ncaption: two pets in a park.") == Parsed(
        ("cat", "dog", "park"), "two pets in a park.")
    out = parse_output("TAGS - cat, dog, park\nCAPTION - Two pets play in a park.")
    assert out.tags == ("cat", "dog", "park")
    assert out.caption == "Two pets play in a park."


def test_labels_with_instructions_in_parentheses_and_caption_on_next_line():
    out = parse_output("Tags (comma-separated): cat, sofa\n\nCaption (one sentence):\nA cat sleeps.")
    assert out == Parsed(("cat", "sofa"), "A cat sleeps.")


def test_hashtags():
    out = parse_output("#sunset #beach #ocean")
    assert out.tags == ("sunset", "beach", "ocean")
    out = parse_output("A quiet evening by the sea. #Sunset #beach #ocean")
    assert out.tags == ("sunset", "beach", "ocean")
    assert out.caption.startswith("A quiet evening by the sea.")


def test_repeated_tags_are_deduplicated():
    assert parse_output("Tags: cat, cat, Cat, cat, CAT\nCaption: A cat.").tags == ("cat",)
    assert parse_output("Tags: " + ", ".join(["cat", "dog"] * 50)).tags == ("cat", "dog")
    assert parse_output("cat, cat, cat, cat").tags == ("cat",)


def test_degenerate_loops_are_not_repeated_in_caption():
    out = parse_output("Tags: dog\nCaption: a dog a dog a dog a dog a dog a dog")
    assert out.caption == "a dog"
    out = parse_output("Tags: dog, park\nCaption: " + "The dog is running in the park. " * 40)
    assert out.caption == "The dog is running in the park."
    assert parse_output("a dog a dog a dog a dog").caption == "a dog"


def test_two_mentions_are_not_a_loop():
    out = parse_output("Tags: bora bora\nCaption: Bora Bora seen from the air, Bora Bora lagoon.")
    assert out.tags == ("bora bora",)
    assert out.caption == "Bora Bora seen from the air, Bora Bora lagoon."


def test_truncated_labelled_answer_keeps_what_was_written():
    assert parse_output("Tags: cat, sofa, lam").tags == ("cat", "sofa", "lam")
    out = parse_output("Tags: cat, sofa, lamp\nCaption: A cat sleeps on a so")
    assert out.tags == ("cat", "sofa", "lamp")
    assert out.caption == "A cat sleeps on a so"


def test_truncated_json():
    out = parse_output('{"tags": ["cat", "sofa", "lamp')
    assert out.tags[:2] == ("cat", "sofa")
    out = parse_output('```json\n{"tags": ["cat", "sofa"], "caption": "She said \\"hi\\" to a cat on a so')
    assert out.tags == ("cat", "sofa")
    assert out.caption == 'She said "hi" to a cat on a so'


def test_truncated_json_decodes_unicode_escapes():
    out = parse_output('{"tags": ["caf\\u00e9", "terrace"], "caption": "A caf\\u00e9 terrace at ni')
    assert out.tags == ("café", "terrace")
    assert out.caption == "A café terrace at ni"


@pytest.mark.parametrize("raw", [None, "", "   \n\t  "])
def test_empty_answers(raw):
    assert parse_output(raw) == Parsed((), "")


@pytest.mark.parametrize("raw", ["...!!!???", ":::", "---", "{", "}{", "###", '"'])
def test_only_punctuation_gives_no_tags(raw):
    out = parse_output(raw)
    assert out.tags == ()
    assert isinstance(out.caption, str)


def test_brace_that_is_not_json_is_kept_as_text():
    out = parse_output("The cat {looks} happy on the sofa, next to a set {1, 2, 3} of blocks.")
    assert out.caption == "The cat {looks} happy on the sofa, next to a set {1, 2, 3} of blocks."


def test_unicode_tags_and_caption():
    out = parse_output("Tags: Chat, café, 猫, 🐱\nCaption: Un chat dort dans le café 🐱.")
    assert out.tags == ("chat", "café", "猫", "🐱")
    assert out.caption == "Un chat dort dans le café 🐱."


def test_cjk_commas_split_tags():
    out = parse_output("Tags：猫，沙发、台灯\nCaption：一只猫睡在沙发上。")
    assert out.tags == ("猫", "沙发", "台灯")
    assert out.caption == "一只猫睡在沙发上。"


def test_requested_format_on_one_line():
    # The prompt itself writes the format on one line, so models often echo it that way.
    out = parse_output("Tags: cat, sofa, lamp Caption: A tabby cat sleeps on a grey sofa.")
    assert out.tags == ("cat", "sofa", "lamp")
    assert out.caption == "A tabby cat sleeps on a grey sofa."


def test_unlabelled_caption_after_tags_line_is_kept():
    out = parse_output("Tags: cat, sofa, lamp\nA tabby cat sleeps on a grey sofa next to a lamp.")
    assert out.tags == ("cat", "sofa", "lamp")
    assert out.caption == "A tabby cat sleeps on a grey sofa next to a lamp."


def test_very_long_answer_is_kept_whole():
    text = " ".join(f"Object {i} is a chair near window {i}." for i in range(3000))
    assert len(text) > 100_000
    out = parse_output(text)
    assert out.caption.startswith("Object 0 is a chair")
    assert out.caption.endswith("Object 2999 is a chair near window 2999.")


def test_very_long_degenerate_answer_collapses():
    out = parse_output("Caption: " + "a dog " * 20_000)
    assert out.caption == "a dog"


def _check_invariants(out):
    assert isinstance(out, Parsed)
    assert isinstance(out.caption, str)
    assert isinstance(out.tags, tuple)
    assert len(set(out.tags)) == len(out.tags)
    for tag in out.tags:
        assert isinstance(tag, str) and tag.strip()
        assert tag == tag.lower()
        assert len(tag.split()) <= MAX_TAG_WORDS


PIECES = st.sampled_from([
    "Tags:", "Caption:", "**Tags:**", "### Keywords", "- ", "1. ", "#sunset ", ", ", "\n", "{", "}",
    '"tags": [', '"caption": "', "```json", "cat", "Sofa", "and lamp", "猫", "🐱", "a dog a dog a dog ",
    "The image shows ",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(), st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=30).map("".join)))
def test_never_raises_and_tags_are_clean(text):
    _check_invariants(parse_output(text))
