"""Concept annotators: the reply parser, the lexical rules, the OpenAI client against a fake
server, and a local chat model."""

from __future__ import annotations

import time

import pytest
from fake_openai import GOOD_REPLY, FakeOpenAI

from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.wordnet import WordNet
from interpret_shift.methods.ffn.annotators import (
    CANNOT_TELL,
    LEVELS,
    TASKS,
    Annotation,
    Annotator,
    annotate_all,
    chat_messages,
    parse_reply,
)
from interpret_shift.methods.ffn.annotators.lexical import LexicalAnnotator
from interpret_shift.methods.ffn.annotators.openai_compat import OpenAIAnnotator

# -- parser -------------------------------------------------------------------------------


def test_parse_a_well_formed_reply():
    found = parse_reply("Concept: dates\nTask: daily writing\nLevel: semantics", seed=3)
    assert found == Annotation("dates", ("daily writing",), "semantics", 3,
                               "Concept: dates\nTask: daily writing\nLevel: semantics")  # fmt: skip
    assert found.task == "daily writing" and found.explainable


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            "concept: Numbers.\ntask: Solving Math Problems\nlevel: SEMANTIC",
            ("Numbers", ("solving math problems",), "semantics"),
        ),
        (
            "Sure! Here you go:\n**Concept:** programming terms\n**Task:** coding; professional "
            "writing\n**Level:** Semantic\nHope this helps.",
            ("programming terms", ("coding", "professional writing"), "semantics"),
        ),
        (
            "- Concept: rhyming words\n- Tasks: literary writing\n- Level: phonological",
            ("rhyming words", ("literary writing",), "phonology"),
        ),
        ("Concept: URLs\nTask: None\nLevel: Morphology", ("URLs", ("none",), "morphology")),
        (
            "Concept: verbs\nTask: math, translation\nLevel: syntax (grammar)",
            ("verbs", ("solving math problems", "translation"), "syntax"),
        ),
        ("Concept: food\nTask: cooking\nLevel: language", ("food", (CANNOT_TELL,), CANNOT_TELL)),
        ("Concept: food\nTask: daily writing", ("food", ("daily writing",), CANNOT_TELL)),
        (
            "Concept: Cannot Tell\nTask: coding\nLevel: syntax",
            (CANNOT_TELL, (CANNOT_TELL,), CANNOT_TELL),
        ),
        ("I can't tell what these words share.", (CANNOT_TELL, (CANNOT_TELL,), CANNOT_TELL)),
        ("", (CANNOT_TELL, (CANNOT_TELL,), CANNOT_TELL)),
        (
            "Concept: dates\nTask: daily writing\nLevel: semantics\nTask: coding\nLevel: syntax",
            ("dates", ("daily writing",), "semantics"),
        ),
    ],
)
def test_parse_tolerates_case_decoration_and_garbage(reply, expected):
    found = parse_reply(reply)
    assert (found.concept, found.tasks, found.level) == expected
    assert set(found.tasks) <= set(TASKS) | {CANNOT_TELL}
    assert found.level in (*LEVELS, CANNOT_TELL)
    assert found.raw == reply


def test_annotation_round_trips_through_a_dict():
    annotation = Annotation("dates", ("daily writing", "coding"), "semantics", 4, "raw")
    assert Annotation.from_dict(annotation.to_dict()) == annotation


def test_chat_messages_hold_instruction_examples_and_the_cleaned_words():
    messages = chat_messages(["Ġapple", " bread", "\u2581milk", "  "])
    assert messages[0]["role"] == "system" and "Concept:" in messages[0]["content"]
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * 6
    assert messages[-1] == {"role": "user", "content": "Words: apple, bread, milk."}
    for example in messages[2:-1:2]:  # every few-shot answer parses into the categories
        parsed = parse_reply(example["content"])
        assert parsed.level in (*LEVELS, CANNOT_TELL) and parsed.task in (*TASKS, CANNOT_TELL)


# -- lexical --------------------------------------------------------------------------------


@pytest.fixture
def wordnet_installed() -> None:
    """WordNet's files are system data: say how to get them rather than skip the test."""
    if not WordNet.available():
        pytest.fail(
            "these tests need WordNet: `apt-get install -y wordnet-base` (.ci/run does this)"
        )


@pytest.fixture(scope="module")
def lexical():
    return LexicalAnnotator()


@pytest.mark.parametrize(
    "words, concept, task, level",
    [
        (
            ["1", "2", "3.5", "42", "1,000", "7th", "+", "="],
            "numbers and math",
            "solving math problems",
            "semantics",
        ),
        (["12", "7", "2024", "3.14", "0"], "numbers", "solving math problems", "semantics"),
        (
            ["def", "return", "self", "myVar", "snake_case", "os.path", "import"],
            "code tokens",
            "coding",
            "semantics",
        ),
        (["{", "};", "->", "==", "#include", "[]", "&&"], "code tokens", "coding", "syntax"),
        (
            ["InterfaceSelection", "<|im_start|>", "<file_sep>", "numpy", "stderr", "dog"],
            "code tokens",
            "coding",
            "semantics",
        ),
        (
            ["привет", "мир", "дом", "кот", "the"],
            "words in Cyrillic script",
            "translation",
            "semantics",
        ),
        (["日本", "中国", "東京", "大阪"], "words in CJK script", "translation", "semantics"),
        (
            ["café", "naïve", "señor", "über", "dog"],
            "non-English Latin-script words",
            "translation",
            "semantics",
        ),
        (["the", "of", "and", "to", "in", "a"], "function words", "none", "syntax"),
        ([",", ".", ";", "!", "?", ":"], "punctuation", "none", "syntax"),
        (
            ["NASA", "FBI", "U.S.", "a.m.", "etc.", "CEO"],
            "abbreviations and acronyms",
            "professional writing",
            "morphology",
        ),
        (
            ["running", "jumping", "eating", "swimming", "reading", "table"],
            "words with the suffix -ing",
            "none",
            "morphology",
        ),
        (
            ["unhappy", "undo", "unfair", "unknown", "untie"],
            "words with the prefix un-",
            "none",
            "morphology",
        ),
        (
            ["light", "night", "bright", "fight", "might", "sight"],
            "rhyming words (-ight)",
            "literary writing",
            "phonology",
        ),
        (["blue", "Paris", "7", "run", "{", "happy"], CANNOT_TELL, CANNOT_TELL, CANNOT_TELL),
        ([], CANNOT_TELL, CANNOT_TELL, CANNOT_TELL),
    ],
)
def test_lexical_rules(lexical, words, concept, task, level):
    found = lexical.annotate(words, seed=2)
    assert (found.concept, found.task, found.level, found.seed) == (concept, task, level, 2)


@pytest.mark.usefixtures("wordnet_installed")
@pytest.mark.parametrize(
    "words, concept, task, level",
    [
        (
            ["apple", "bread", "cheese", "soup", "bananas", "rice"],
            "noun.food",
            "daily writing",
            "semantics",
        ),
        (
            ["love", "anger", "joy", "fear", "sadness"],
            "noun.feeling",
            "literary writing",
            "semantics",
        ),
        (
            ["meter", "kilogram", "liter", "inch", "ounce"],
            "noun.quantity",
            "solving math problems",
            "semantics",
        ),
        (
            ["say", "tell", "ask", "announce", "declare"],
            "verb.communication",
            "professional writing",
            "semantics",
        ),
        (["green", "tall", "quick", "beautiful", "cold", "heavy"], "adjectives", "none", "syntax"),
        (  # a third of the words in one lexicographer file is enough
            ["apple", "bread", "cheese", "car", "dog", "tree", "idea", "river", "king"],
            "noun.food",
            "daily writing",
            "semantics",
        ),
        (  # mostly nouns is no concept
            ["car", "dog", "tree", "idea", "river", "king", "chair", "sun"],
            CANNOT_TELL,
            CANNOT_TELL,
            CANNOT_TELL,
        ),
        (["ght", "qu", "zz", "x", "rk", "mb"], "sub-word fragments", "none", "phonology"),
    ],
)
def test_lexical_wordnet_rules(lexical, words, concept, task, level):
    found = lexical.annotate(words)
    assert (found.concept, found.task, found.level) == (concept, task, level)


@pytest.mark.usefixtures("wordnet_installed")
def test_wordnet_reader_finds_lemmas_and_lexnames():
    from interpret_shift.lexicon.wordnet import wordnet

    reader = wordnet()
    assert reader.base_forms("children", "n") == ["child"]
    assert reader.base_forms("went", "v") == ["go"]
    assert reader.sense("apples").lexname == "noun.food"
    assert reader.sense("run").pos == "v"
    assert reader.sense("the") is None and not reader.knows("qzx")


def test_lexical_annotator_is_an_annotator_and_annotates_every_seed(lexical):
    assert isinstance(lexical, Annotator)
    table = annotate_all(lexical, [["1", "2"], ["the", "of"]], seeds=(0, 5))
    assert [[a.seed for a in row] for row in table] == [[0, 0], [5, 5]]
    assert [a.concept for a in table[1]] == ["numbers", "function words"]


# -- openai-compatible endpoint -----------------------------------------------------------


def client(fake: FakeOpenAI, tmp_path, **options) -> OpenAIAnnotator:
    sleeps = []
    options = {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test",
               "cache_dir": tmp_path / "cache", "timeout": 2.0, "retries": 3, "backoff": 0.01,
               "sleep": sleeps.append, **options}  # fmt: skip
    annotator = OpenAIAnnotator(**options)
    annotator.sleeps = sleeps
    return annotator


def test_openai_good_answer_is_parsed_and_the_request_is_complete(tmp_path):
    with FakeOpenAI() as fake:
        found = client(fake, tmp_path).annotate(["1", "2", "3"], seed=7)
    assert (found.concept, found.task, found.level, found.seed) == (
        "numbers", "solving math problems", "semantics", 7)  # fmt: skip
    assert found.raw == GOOD_REPLY
    (request,) = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "fake-model" and request["body"]["seed"] == 7
    assert request["body"]["messages"] == chat_messages(["1", "2", "3"])


def test_openai_cache_makes_a_rerun_free(tmp_path):
    with FakeOpenAI() as fake:
        first = client(fake, tmp_path).annotate(["a", "b"], seed=0)
        again = client(fake, tmp_path)  # a new process would build a new client
        assert again.annotate(["a", "b"], seed=0) == first
        assert len(fake.requests) == 1 and again.requests_sent == 0
        again.annotate(["a", "b"], seed=1)  # another seed is another request
        assert len(fake.requests) == 2
        uncached = client(fake, tmp_path, cache=False)
        uncached.annotate(["a", "b"], seed=0)
        assert len(fake.requests) == 3
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_openai_retries_server_errors_with_exponential_backoff(tmp_path):
    with FakeOpenAI() as fake:
        fake.script = ["500", "429", "malformed_json"]
        annotator = client(fake, tmp_path, backoff=0.5, max_backoff=1.5)
        found = annotator.annotate(["x"])
    assert found.concept == "numbers"
    assert len(fake.requests) == 4
    assert annotator.sleeps == [0.5, 1.0, 1.5]  # 0.5 * 2**k, capped at max_backoff


def test_openai_gives_a_clear_error_after_the_retry_budget(tmp_path):
    with FakeOpenAI() as fake:
        fake.script = ["500"] * 10
        annotator = client(fake, tmp_path, retries=2)
        with pytest.raises(InterpretShiftError, match="failed 3 times; last: HTTP 500") as error:
            annotator.annotate(["x"])
    assert len(fake.requests) == 3
    assert "retries=" in error.value.fix
    assert not list((tmp_path / "cache").glob("*.json"))  # failures are not cached


def test_openai_does_not_retry_a_client_error(tmp_path):
    with FakeOpenAI() as fake:
        fake.script = ["401"]
        with pytest.raises(InterpretShiftError, match="HTTP 401: Incorrect API key") as error:
            client(fake, tmp_path).annotate(["x"])
    assert len(fake.requests) == 1
    assert "OPENAI_API_KEY" in error.value.fix


def test_openai_times_out_and_retries_a_slow_server(tmp_path):
    with FakeOpenAI(slow_seconds=1.0) as fake:
        fake.script = ["slow", "slow"]
        annotator = client(fake, tmp_path, timeout=0.2, retries=1)
        start = time.monotonic()
        with pytest.raises(InterpretShiftError, match="no answer within 0.2 s"):
            annotator.annotate(["x"])
        assert time.monotonic() - start < 1.5
        assert len(fake.requests) == 2
        fake.script = ["slow"]
        assert client(fake, tmp_path, timeout=0.2, retries=1).annotate(["x"]).concept == "numbers"


def test_openai_malformed_content_is_cannot_tell(tmp_path):
    with FakeOpenAI() as fake:
        fake.script = ["malformed_content"]
        found = client(fake, tmp_path).annotate(["x"])
    assert (found.concept, found.task, found.level) == (CANNOT_TELL,) * 3
    assert found.raw == "I like turtles."


def test_openai_rate_limit_spaces_requests(tmp_path):
    with FakeOpenAI() as fake:
        annotator = client(fake, tmp_path, min_interval=0.15, sleep=time.sleep, cache=False)
        for seed in range(3):
            annotator.annotate(["x"], seed)
    gaps = [b["time"] - a["time"] for a, b in zip(fake.requests, fake.requests[1:])]
    assert min(gaps) >= 0.14


def test_openai_settings_come_from_the_environment_when_used(monkeypatch, tmp_path):
    monkeypatch.delenv("INTERPRET_SHIFT_OPENAI_MODEL", raising=False)
    annotator = OpenAIAnnotator(cache_dir=tmp_path)  # built before the environment is set
    with pytest.raises(InterpretShiftError, match="needs a model name"):
        annotator.annotate(["x"])
    monkeypatch.setenv("INTERPRET_SHIFT_OPENAI_BASE_URL", "http://localhost:8000")
    monkeypatch.setenv("INTERPRET_SHIFT_OPENAI_MODEL", "served")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert annotator.url == "http://localhost:8000/v1/chat/completions"
    assert (annotator.model, annotator.api_key) == ("served", "sk-env")
    assert OpenAIAnnotator("http://h/api/v1/", "m").url == "http://h/api/v1/chat/completions"


def test_builtin_annotators_are_ready_instances(monkeypatch):
    from interpret_shift.methods.ffn.annotators import BUILTIN_ANNOTATORS

    assert [a.name for a in BUILTIN_ANNOTATORS] == ["lexical", "local-llm", "openai"]
    assert all(isinstance(a, Annotator) for a in BUILTIN_ANNOTATORS)
    assert BUILTIN_ANNOTATORS[0].annotate(["1", "2"]).concept == "numbers"
    monkeypatch.delenv("INTERPRET_SHIFT_ANNOTATOR_MODEL", raising=False)
    with pytest.raises(InterpretShiftError, match="local-llm annotator needs a model"):
        BUILTIN_ANNOTATORS[1].annotate(["x"])


def test_openai_wrong_route_is_a_clear_error(tmp_path):
    with FakeOpenAI() as fake:
        annotator = client(fake, tmp_path, base_url=fake.base_url.removesuffix("/v1") + "/v2")
        with pytest.raises(InterpretShiftError, match="HTTP 404") as error:
            annotator.annotate(["x"])
    assert "base URL" in error.value.fix


# -- local model --------------------------------------------------------------------------


def test_local_llm_replies_are_seeded_and_parsed(smollm2):
    from interpret_shift.methods.ffn.annotators.local_llm import LocalLLMAnnotator

    annotator = LocalLLMAnnotator(smollm2, max_new_tokens=16)
    words = ["1", "2", "3", "42", "100", "7"]
    ids = annotator.prompt_ids(words)
    text = smollm2.tokenizer.decode(ids[0])
    assert "Words: 1, 2, 3, 42, 100, 7." in text and "Concept: dates" in text
    first = annotator.annotate(words, seed=1)
    assert annotator.annotate(words, seed=1) == first  # same seed, same reply
    assert first.seed == 1 and first.raw
    assert first.task in (*TASKS, CANNOT_TELL) and first.level in (*LEVELS, CANNOT_TELL)
    assert parse_reply(first.raw, 1) == first
