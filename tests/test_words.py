"""Word lists (vocabulary markers, files, wordfreq, WordNet verbs) and similarity backends."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from tiny import tiny_model

from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.similarity import (
    ModelEmbedding,
    SentenceTransformer,
    StaticVectors,
    _pool,
    thresholds,
)
from interpret_shift.lexicon.words import (
    INSTRUCTION_VERBS,
    STOP_WORDS,
    FileWords,
    GeneralVerbs,
    InstructionVerbs,
    VocabularyWords,
    WordList,
    frequent_words,
    general_verbs,
    load_words,
    read_word_file,
    vocabulary_words,
    word_token_ids,
)

# -- vocabulary ------------------------------------------------------------------------------


def test_byte_level_vocabulary_keeps_alphabetic_whole_words_once():
    vocab = {
        "Ġthe": 7, "the": 3, "Ġcat": 9, "ĠThe": 12, "Ġ2024": 13, "Ġcaf": 14, "ĠcafÃ©": 15,
        "Ġ": 2, "Ġdon't": 16, "Ġx": 17, "ĠÃ": 18, "Ġna": 19, "Ġnaïve": 20, "ĠCat": 4,
    }  # fmt: skip
    words, marked = vocabulary_words(vocab)
    assert marked
    # token-id order; 'Cat' (id 4) wins over 'cat' (id 9); 'ĠcafÃ©' is 'café' in UTF-8;
    # 'ĠÃ' is half a UTF-8 character; 'Ġnaïve' decodes to invalid UTF-8 (byte 0xEF + 've')
    assert words.words == ["Cat", "the", "caf", "café", "x", "na"]
    assert words.token_ids == [[4], [7], [14], [15], [17], [19]]


def test_sentencepiece_vocabulary_and_no_markers():
    vocab = {"▁the": 5, "the": 6, "▁Über": 7, "▁über": 9, "▁a1": 8, "<0x41>": 3, "▁▁": 10}
    words, marked = vocabulary_words(vocab)
    assert marked and words.words == ["the", "Über"] and words.token_ids == [[5], [7]]
    with pytest.raises(InterpretShiftError, match="marks no word boundaries"):
        vocabulary_words({"the": 1, "##s": 2})
    with pytest.raises(InterpretShiftError, match="needs the model's tokenizer"):
        VocabularyWords().load(None)


class SplitSpaceTokenizer:
    """A byte-level vocabulary whose pre-tokenizer isolates white space (the demo pair's)."""

    def get_vocab(self):
        return {"Ġ": 0, "ĠĠ": 1, "glad": 2, "struction": 3, "Glad": 4, "ful": 5, "2": 6, "fox": 7}


def test_vocabulary_without_markers_on_words_keeps_english_words():
    words, marked = vocabulary_words(SplitSpaceTokenizer().get_vocab())
    assert not marked and words.words == ["glad", "struction", "ful", "fox"]
    # wordfreq knows 'glad' and 'fox'; 'struction' and 'ful' are pieces of words
    assert sorted(VocabularyWords().load(SplitSpaceTokenizer()).words) == ["fox", "glad"]


class RuleTokenizer:
    """A fake tokenizer: 'ab' is one token with a leading space, 'xyz' one without."""

    table = {" ab": [1], "ab": [2, 3], " xyz": [4, 5], "xyz": [6], " tie": [7], "tie": [8]}

    def __call__(self, texts, add_special_tokens=False):
        assert add_special_tokens is False
        return {"input_ids": [self.table.get(t, []) for t in texts]}


def test_word_token_ids_take_the_shorter_spelling():
    assert word_token_ids(RuleTokenizer(), ["ab", "xyz", "tie"]) == [[1], [6], [7]]
    with pytest.raises(InterpretShiftError, match="no token"):
        word_token_ids(RuleTokenizer(), ["ab", "   "])


def metaspace_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    corpus = ["the cat sat on the mat", "a happy dog and a glad cat", "the dog ran to it"] * 5
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=60,
                                                              special_tokens=["<unk>"]))  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


def test_embeddings_average_the_tokens_of_multi_token_words():
    tokenizer = metaspace_tokenizer()
    model = tiny_model("llama")
    subject = Subject.from_model(model, tokenizer)
    words = WordList(["cat", "catdog", "happy"])
    rows = words.embeddings(subject)
    table = model.get_input_embeddings().weight
    for word, row in zip(words.words, rows):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        expected = sum(table[i] for i in ids) / len(ids)
        assert torch.allclose(row, expected, atol=1e-6), word
    assert len(tokenizer("catdog", add_special_tokens=False)["input_ids"]) > 1
    # the output matrix, from the Weights with resolved token ids
    resolved = words.tokenized(tokenizer)
    out = resolved.embeddings(subject.weights, matrix="output")
    head = model.get_output_embeddings().weight
    ids = resolved.token_ids[1]
    assert torch.allclose(out[1], head[ids].mean(0), atol=1e-6)
    with pytest.raises(InterpretShiftError, match="has no token ids"):
        words.embeddings(subject.weights)
    vocabulary = VocabularyWords().load(subject)
    assert "the" in vocabulary.words and all(w.isalpha() for w in vocabulary.words)


# -- files -----------------------------------------------------------------------------------


def test_word_file_with_frequencies(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text("rare\t1\ncommon\t50\n\nmiddle\t7.5\nrare\t99\n", encoding="utf-8")
    words = read_word_file(path)
    assert words.words == ["rare", "common", "middle"]  # duplicates keep the first line
    assert words.frequencies.tolist() == [1.0, 50.0, 7.5]
    assert words.most_frequent(2).tolist() == [1, 2]
    assert words.top(2).words == ["common", "middle"]
    assert FileWords().load(path=path, size=1).words == ["common"]


def test_word_file_without_frequencies_keeps_file_order(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("zeta\nalpha\n", encoding="utf-8")
    words = read_word_file(path)
    assert words.frequencies is None and words.top(1).words == ["zeta"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\t1\tx\n", "line 1: 3 tab-separated fields"),
        ("a\t1\nb\tlots\n", "line 2: frequency 'lots' is not a non-negative number"),
        ("a\t-3\n", "line 1: frequency '-3'"),
        ("a\t1\nb\n", "line 2: some lines give a frequency"),
        ("\n\n", "holds no words"),
        ("\t4\n", "line 1: the word is empty"),
    ],
)
def test_word_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InterpretShiftError, match=message):
        read_word_file(path)


def test_word_file_missing_or_not_utf8(tmp_path):
    with pytest.raises(InterpretShiftError, match="No word file"):
        read_word_file(tmp_path / "none.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InterpretShiftError, match="not UTF-8"):
        read_word_file(tmp_path / "latin1.txt")
    with pytest.raises(InterpretShiftError, match="needs a path"):
        FileWords().load()


def test_the_papers_word_list_read_in_place():
    path = SHARED_DATA / "SingleShareGPT_Vocab.tsv"
    words = read_word_file(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line.strip()]
    expected = {}
    for word, freq in rows:
        expected.setdefault(word.strip(), float(freq))
    assert len(words) == len(expected)
    top = sorted(expected, key=lambda w: -expected[w])[:20]
    assert words.top(20).words == top


# -- wordfreq and WordNet --------------------------------------------------------------------


def test_wordfreq_list_is_alphabetic_and_ranked():
    words = frequent_words(300)
    assert len(words) == 300 and words.words[0] == "the"
    assert all(w.isalpha() for w in words.words)
    assert np.all(np.diff(words.frequencies) <= 0)


def test_missing_wordfreq_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "wordfreq", None)  # makes `import wordfreq` fail
    with pytest.raises(InterpretShiftError, match="'wordfreq' package") as error:
        frequent_words(10)
    assert "pip install" in error.value.fix


def test_general_verbs_from_wordnet_or_a_clear_error():
    if not Path("/usr/share/wordnet/index.verb").exists():
        with pytest.raises(InterpretShiftError, match="wordnet-base"):
            GeneralVerbs().load(size=50)
        return
    verbs = GeneralVerbs().load(size=80)
    assert len(verbs) == 80 and np.all(np.diff(verbs.frequencies) <= 0)
    for verb in ("make", "know", "think", "take"):
        assert verb in verbs.words
    assert not set(verbs.words) & (set(INSTRUCTION_VERBS) | STOP_WORDS)
    for noun in ("time", "people", "year"):  # verbs in WordNet, but mostly used as nouns
        assert noun not in verbs.words


def test_wordnet_missing_names_the_debian_package(tmp_path):
    with pytest.raises(InterpretShiftError, match="wordnet-base") as error:
        general_verbs(10, wordnet_dir=tmp_path)
    assert "file" in error.value.fix


def test_verb_lists_can_be_overridden(tmp_path):
    assert InstructionVerbs().load().words == list(INSTRUCTION_VERBS)
    assert {"translate", "summarize", "classify", "explain", "write"} <= set(INSTRUCTION_VERBS)
    path = tmp_path / "verbs.txt"
    path.write_text("paint\nsing\n", encoding="utf-8")
    assert InstructionVerbs().load(path=path).words == ["paint", "sing"]
    assert GeneralVerbs().load(path=path, size=1).words == ["paint"]
    assert load_words("instruction-verbs", size=3).words == list(INSTRUCTION_VERBS[:3])
    with pytest.raises(InterpretShiftError, match="Unknown word list 'verbs'"):
        load_words("verbs")


def test_lowered_ids_group_case_variants():
    ids = WordList(["Apple", "apple", "pear", "APPLE"]).lowered_ids()
    assert ids[0] == ids[1] == ids[3] != ids[2]


# -- similarity backends ---------------------------------------------------------------------


@pytest.mark.parametrize("width", [6, 12])  # narrower / wider than the baseline is long
def test_thresholds_equal_a_loop(width):
    generator = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(50, width, generator=generator), dim=1)
    baseline = np.array([3, 1, 4, 15, 9, 26, 5])
    got = thresholds(vectors, baseline, z=1.96, chunk=16)
    for i in range(50):
        sims = [float(vectors[i] @ vectors[j]) for j in baseline]
        mean = sum(sims) / len(sims)
        std = math.sqrt(sum((s - mean) ** 2 for s in sims) / len(sims))
        assert float(got[i]) == pytest.approx(mean + 1.96 * std, abs=1e-6)


def test_model_embedding_backend_is_cosine_of_the_input_embeddings():
    model = tiny_model("gpt2")
    words = WordList(["a", "b", "ab"], token_ids=[[5], [6], [5, 6]])
    vectors = ModelEmbedding().vectors(words, Subject.from_model(model))
    table = model.get_input_embeddings().weight
    rows = [table[5], table[6], (table[5] + table[6]) / 2]
    for i in range(3):
        for j in range(3):
            expected = torch.nn.functional.cosine_similarity(rows[i], rows[j], dim=0)
            assert float(vectors[i] @ vectors[j]) == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(InterpretShiftError, match="needs the model"):
        ModelEmbedding().vectors(words)


def test_minilm_backend_knows_synonyms():
    words = WordList(["happy", "glad", "carburetor"])
    vectors = SentenceTransformer().vectors(words)
    assert vectors.shape == (3, 384)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2


def test_pooling_modes_respect_the_mask():
    hidden = torch.arange(12.0).reshape(1, 3, 4)
    mask = torch.tensor([[1, 1, 0]])
    assert _pool(hidden, mask, "mean_tokens").tolist() == [[2.0, 3.0, 4.0, 5.0]]
    assert _pool(hidden, mask, "max_tokens").tolist() == [[4.0, 5.0, 6.0, 7.0]]
    assert _pool(hidden, mask, "cls_token").tolist() == [[0.0, 1.0, 2.0, 3.0]]
    sqrt = _pool(hidden, mask, "mean_sqrt_len_tokens")
    assert torch.allclose(sqrt, torch.tensor([[4.0, 6.0, 8.0, 10.0]]) / math.sqrt(2))


@pytest.mark.parametrize("header", ["", "4 3\n"])
def test_static_vectors_from_a_text_file(tmp_path, header):
    path = tmp_path / "vectors.txt"
    path.write_text(
        header + "king 1 0 0\nKing 0 1 0\nqueen 0.9 0.1 0\nNew York 0 0 2\n", encoding="utf-8"
    )
    words = WordList(["queen", "king", "KING", "New York", "unknown"])
    vectors = StaticVectors().vectors(words, path=path)
    expected = torch.nn.functional.normalize(torch.tensor(
        [[0.9, 0.1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]), dim=1)  # fmt: skip
    assert torch.allclose(vectors, expected, atol=1e-6)


def test_static_vectors_errors(tmp_path):
    words = WordList(["a"])
    with pytest.raises(InterpretShiftError, match="needs a vector file"):
        StaticVectors().vectors(words)
    with pytest.raises(InterpretShiftError, match="No vector file"):
        StaticVectors().vectors(words, path=tmp_path / "none.txt")
    path = tmp_path / "short.txt"
    path.write_text("a 1 2 3\nb 1\n", encoding="utf-8")
    with pytest.raises(InterpretShiftError, match="line 2: 1 values where 3 expected"):
        StaticVectors().vectors(words, path=path)
    path.write_text("a 1 x 3\n", encoding="utf-8")
    with pytest.raises(InterpretShiftError, match="line 1: the values of 'a'"):
        StaticVectors().vectors(words, path=path)
