import pytest
from hypothesis import given
from hypothesis import strategies as st

from mllm_retrieval.search.query import parse_query
from mllm_retrieval.search.text import singular, tokenize


@pytest.mark.parametrize("plural,single", [
    ("pigeons", "pigeon"), ("benches", "bench"), ("skies", "sky"), ("boxes", "box"),
    ("buses", "bus"), ("glasses", "glass"), ("people", "person"), ("women", "woman"),
    ("knives", "knife"), ("horses", "horse"), ("tvs", "tv"), ("dishes", "dish"),
])
def test_plurals_fold_to_singular(plural, single):
    assert singular(plural) == single


@pytest.mark.parametrize("word", ["bus", "grass", "glass", "dress", "cactus", "analysis", "gas", "series",
                                  "news", "lens", "physics", "scissors"])
def test_singular_words_stay(word):
    assert singular(word) == word


@pytest.mark.parametrize("plural,single", [
    ("movies", "movie"), ("cookies", "cookie"), ("selfies", "selfie"), ("pies", "pie"), ("ties", "tie"),
    ("zombies", "zombie"), ("lenses", "lens"), ("puppies", "puppy"), ("berries", "berry"), ("ladies", "lady"),
])
def test_ie_plurals_meet_their_singular_and_y_plurals_still_fold(plural, single):
    assert singular(plural) == singular(single) == single


def test_news_is_not_the_plural_of_new():
    assert tokenize("the news") == ["news"] and tokenize("a new car") == ["new", "car"]


@pytest.mark.parametrize("apostrophe", ["'", "\u2019", "\u02bc", "\u2018"])
def test_typographic_apostrophes_read_as_ascii(apostrophe):
    assert tokenize(f"the dog{apostrophe}s bowl") == ["dog", "bowl"]
    assert tokenize(f"don{apostrophe}t") == tokenize("don't") == ["dont"]


def test_tokenize_lowercases_drops_stopwords_and_punctuation():
    words = ["pigeon", "bridge", "near", "two", "cafe"]
    assert tokenize("A Pigeon, on the BRIDGE! (near two cafés)") == words
    assert tokenize("man's hat; 3-legged stool") == ["man", "hat", "3", "legged", "stool"]


def test_query_syntax():
    q = parse_query('pigeon +bridge -car "red bus" -"blue sky"')
    assert q.terms == ("pigeon",) and q.must == ("bridge",) and q.exclude == ("car",)
    assert q.phrases == (("red", "bus"),) and q.excluded_phrases == (("blue", "sky"),)
    assert q.ranking_terms == ("pigeon", "bridge", "red", "bus")


@pytest.mark.parametrize("text", ['"unclosed quote', "AND OR NOT", "col:on *wild* (paren", "NEAR/3",
                                  "-", "+", '""', "   ", "🐦 бридж 鸽子", "x" * 10_000])
def test_odd_query_syntax_is_read_as_words(text):
    q = parse_query(text)
    assert all(t for t in q.ranking_terms)


@given(st.text(max_size=300))
def test_parse_query_never_raises_and_only_uses_given_words(text):
    q = parse_query(text)
    words = set(tokenize(text))
    assert set(q.ranking_terms) <= words and set(q.exclude) <= words


@pytest.mark.parametrize("text,tokens", [
    ("东京塔很高", ["东京", "京塔", "塔很", "很高"]),
    ("北京大学的学生", ["北京", "京大", "大学", "学的", "的学", "学生"]),
    ("東京タワーに行きました",
     ["東京", "京タ", "タワ", "ワー", "ーに", "に行", "行き", "きま", "まし", "した"]),
    ("한국어 사전", ["한국", "국어", "사전"]),  # Hangul stays syllables (NFKD would leave bare jamo)
    ("猫", ["猫"]),  # a lone character stays whole
    ("iPhone手机 Café", ["iphone", "手机", "cafe"]),  # script changes split a word; accents still fold
])
def test_cjk_runs_become_character_bigrams(text, tokens):
    assert tokenize(text) == tokens


def test_kana_voicing_marks_and_halfwidth_forms_are_kept_apart_from_accents():
    assert tokenize("がか") == ["がか"]  # ga is not ka with an accent
    assert tokenize("ｶﾞｿﾘﾝ") == tokenize("ガソリン")  # halfwidth katakana folds to fullwidth


def test_a_chinese_word_inside_a_longer_run_is_found_by_search():
    from mllm_retrieval.search.index.base import get_engine

    engine = get_engine("sparse")
    engine.add([tokenize("欢迎光临北京大学图书馆"), tokenize("上海火车站"), tokenize("a red bus")])
    assert [d for d, _ in engine.search(tokenize("大学"), 3)] == [0]
    assert [d for d, _ in engine.search(tokenize("火车站"), 3)] == [1]
    assert engine.search(tokenize("东京"), 3) == []


def test_english_tokens_are_unchanged_by_the_cjk_rule():
    assert tokenize("Café STOP sign, naïve façade") == ["cafe", "stop", "sign", "naive", "facade"]
