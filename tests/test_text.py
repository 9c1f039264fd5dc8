import pytest
from hypothesis import given
from hypothesis import strategies as st

from mllm_retrieval.search.query import parse_query
from mllm_retrieval.search.text import stem, surface_words, tokenize


@pytest.mark.parametrize("plural,single", [
    ("pigeons", "pigeon"), ("benches", "bench"), ("skies", "sky"), ("boxes", "box"),
    ("buses", "bus"), ("glasses", "glass"), ("people", "person"), ("women", "woman"),
    ("knives", "knife"), ("horses", "horse"), ("tvs", "tv"), ("dishes", "dish"),
    ("movies", "movie"), ("cookies", "cookie"), ("selfies", "selfie"), ("pies", "pie"), ("ties", "tie"),
    ("zombies", "zombie"), ("lenses", "lens"), ("puppies", "puppy"), ("berries", "berry"),
    ("ladies", "lady"), ("giraffes", "giraffe"), ("men", "man"), ("children", "child"), ("skis", "ski"),
])
def test_plurals_meet_their_singular(plural, single):
    assert tokenize(plural) == tokenize(single) and len(tokenize(single)) == 1


@pytest.mark.parametrize("a,b", [("skiing", "ski"), ("surfing", "surf"), ("running", "run")])
def test_verb_forms_meet_their_stem(a, b):
    assert tokenize(a) == tokenize(b)


@pytest.mark.parametrize("a,b", [("news", "new"), ("bus", "bu"), ("glass", "glas"), ("gas", "ga")])
def test_words_ending_in_s_are_not_cut_to_another_word(a, b):
    assert tokenize(a) != tokenize(b)


def test_stemming_is_idempotent_on_its_own_output():
    for word in ("movies", "people", "buses", "knives", "skiing", "giraffes", "news"):
        assert stem(stem(word)) == stem(word)


def test_surface_words_give_back_what_was_typed():
    assert surface_words("Giraffes and movies") == {stem("giraffes"): "giraffes", stem("movie"): "movies"}


def test_news_is_not_the_plural_of_new():
    assert tokenize("the news") == ["news"] and tokenize("a new car") == ["new", "car"]


@pytest.mark.parametrize("apostrophe", ["'", "\u2019", "\u02bc", "\u2018"])
def test_typographic_apostrophes_read_as_ascii(apostrophe):
    assert tokenize(f"the dog{apostrophe}s bowl") == ["dog", "bowl"]
    assert tokenize(f"don{apostrophe}t") == tokenize("don't") == ["dont"]


def test_tokenize_lowercases_drops_stopwords_and_punctuation():
    words = [stem(w) for w in ["pigeon", "bridge", "near", "two", "cafe"]]
    assert tokenize("A Pigeon, on the BRIDGE! (near two cafés)") == words
    assert tokenize("man's hat; 3-legged stool") == [stem(w) for w in ["man", "hat", "3", "legged", "stool"]]


def test_query_syntax():
    q = parse_query('pigeon +bridge -car "red bus" -"blue sky"')
    assert q.terms == ("pigeon",) and q.must == (stem("bridge"),) and q.exclude == ("car",)
    assert q.phrases == (("red", "bus"),) and q.excluded_phrases == (("blue", "sky"),)
    assert q.ranking_terms == tuple(stem(w) for w in ("pigeon", "bridge", "red", "bus"))


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
    ("iPhone手机 Café", [stem("iphone"), "手机", "cafe"]),  # script changes split a word; accents still fold
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
    words = ["cafe", "stop", "sign", "naive", "facade"]
    assert tokenize("Café STOP sign, naïve façade") == [stem(w) for w in words]
