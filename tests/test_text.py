import pytest
from hypothesis import given
from hypothesis import strategies as st

from mllm_retrieval.query import parse_query
from mllm_retrieval.text import singular, tokenize


@pytest.mark.parametrize("plural,single", [
    ("pigeons", "pigeon"), ("benches", "bench"), ("skies", "sky"), ("boxes", "box"),
    ("buses", "bus"), ("glasses", "glass"), ("people", "person"), ("women", "woman"),
    ("knives", "knife"), ("horses", "horse"), ("tvs", "tv"), ("dishes", "dish"),
])
def test_plurals_fold_to_singular(plural, single):
    assert singular(plural) == single


@pytest.mark.parametrize("word", ["bus", "grass", "glass", "dress", "cactus", "analysis", "gas", "series"])
def test_singular_words_stay(word):
    assert singular(word) == word


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
