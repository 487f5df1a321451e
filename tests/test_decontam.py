from cgd.data.decontam import NgramIndex


def _index():
    index = NgramIndex(8)
    index.add("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning.", "gsm8k")
    index.add("Compute $\\dbinom{8}{4}$.", "math500")  # shorter than 8 words
    return index


def test_shared_ngram_is_contaminated_regardless_of_case_and_punctuation():
    hit = _index().match("JANET'S DUCKS lay 16 eggs, per day; she eats three for lunch.")
    assert hit == ("gsm8k", "janet s ducks lay 16 eggs per day")


def test_fewer_than_eight_shared_words_are_not_enough():
    assert _index().match("Her ducks lay 16 eggs per day and she eats three.") is None


def test_short_benchmark_problem_found_whole():
    hit = _index().match("As a warm-up, compute $\\dbinom{8}{4}$ and explain.")
    assert hit is not None and hit[0] == "math500"


def test_short_problem_needs_all_its_words():
    assert _index().match("Compute the sum of 8 and 4.") is None
