"""Check 4: `strata tokenize` against Hugging Face `tokenizers` on every
tokenizer of tests/data/tokenizer, on random and adversarial strings (mixed
scripts, whitespace runs, added tokens, NUL, invalid UTF-8): the ids must be
identical.

Strings go to strata in one call per tokenizer and mode, joined by a
separator (each implementation sees the same joined text, so the comparison is
exact); a mismatch is then narrowed down to the strings that cause it.

Invalid UTF-8 has no reference: the Python and Rust APIs take only valid text.
strata documents that each maximal run of invalid bytes is a pre-token of its
own that goes through BPE as raw bytes (runtime/tokenizer.h).  The expected ids
are built from the real library accordingly: `encode` of every valid segment,
the BPE model (`model.tokenize`) on the byte-level form of every invalid run."""
import glob
import itertools
import json
import os
import subprocess

import pytest
from tokenizers import Tokenizer

import strata_cli
from conftest import rng_for

TOKENIZERS = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(
    os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer", "*", "tokenizer.json.zst")))

SCRIPTS = [
    "Hello", "world", "The", "quick", "brown", "fox", "don't", "I'LL", "we've", "it’s",
    "café", "naïve", "résumé", "Straße", "Ελληνικά", "кириллица", "Привет", "مرحبا",
    "שלום", "हिन्दी", "ไทย", "文档解析测试", "日本語のテキスト", "한국어", "ǅ", "İstanbul",
    "e\u0301", "a\u0308\u0304", "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "𝔘𝔫𝔦", "\U0010fffd", "\u200b",
    "\u200d", "\u2066x\u2069", "\ufeff", "½", "Ⅻ", "١٢٣", "𝟘𝟙", "x²", "µ", "ﬁ", "ｈｅｌｌｏ",
]
PUNCT = [".", ",", "!", "?", "...", "—", "-", "_", "(", ")", "[", "]", "{", "}", "<", ">", "|",
         "<|", "|>", "'", "\"", "`", "```", "#", "@", "$", "%", "&", "*", "+", "=", "/", "\\",
         "::", "->", "=>", "'s", "'S", "''", "<<", ">>"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\u00a0", "\u3000",
          "\u2009", "\u000b", "\u000c", "\u0085", "\u2028", "\u2029", " " * 17, "\t \t", "\x00"]
DIGITS = ["0", "7", "42", "123", "1234", "12345678901", "3.14159", "1,000", "0x1F", "٣"]


def expected_ids(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def random_text(rng, added):
    parts = []
    for _ in range(int(rng.integers(0, 25))):
        r = rng.random()
        if r < 0.30:
            parts.append(str(rng.choice(SCRIPTS)))
        elif r < 0.45:
            parts.append(str(rng.choice(PUNCT)))
        elif r < 0.65:
            parts.append(str(rng.choice(SPACES)))
        elif r < 0.75:
            parts.append(str(rng.choice(DIGITS)))
        elif r < 0.85 and added:
            t = str(rng.choice(added))
            # a whole added token, or a cut-off one
            parts.append(t if rng.random() < 0.7 else t[: int(rng.integers(1, len(t)))])
        else:
            # random code points (no surrogates), weighted toward the BMP
            hi = 0x110000 if rng.random() < 0.2 else 0x3000
            cps = [int(c) for c in rng.integers(1, hi, size=int(rng.integers(1, 6)))]
            parts.append("".join(chr(c) for c in cps if not 0xD800 <= c < 0xE000))
    return "".join(parts)


ADVERSARIAL = [
    "", " ", "  ", "\n", "\x00", "a\x00b", " " * 300, "\n" * 50, "\t" * 9 + "x", "a" * 500,
    "🙂" * 40, "1" * 64, "Hello\r\nworld\r\n\r\n", "  leading and trailing  ", "x \n y",
    "don't DON'T Don'T", "'s's's", "<|endoftext|>", "<|end_of_text|>", "<|end_of_text|><|end_of_text|>",
    " <|end_of_text|> ", "<|end_of_text", "end_of_text|>", "<|start_of_role|>user<|end_of_role|>Hi",
    "<think>hm</think>", "<|answerability|>", "\u00a0\u00a0x", "x\u3000\u3000y", "e\u0301\u0301\u0301",
]

INVALID_UTF8 = [
    b"\xff", b"\x80", b"abc\xffdef", b"\xc3", b"\xc3(", b"caf\xe9", b"\xe2\x82", b"\xe2\x82 x",
    b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\xf0", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf5\x80\x80\x80",
    b"  \xfe\xfe  \xff", b"Hello \x80\x81\x82 world", b"<|end_of_text|>\xff<|end_of_text|>",
    b"\xff\n\n\xfe", b"12\xff34", b"\xef\xbb\xbf\xff", b"\x00\xff\x00",
]


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for name in TOKENIZERS:
        src = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer", name,
                           "tokenizer.json.zst")
        dst = str(d / f"{name}.json")
        subprocess.run(["zstd", "-q", "-d", "-f", src, "-o", dst], check=True)
        out[name] = dst
    return out


def narrow(tok, path, texts, special):
    """The strings whose ids differ, with both results (after a joined mismatch)."""
    bad = []
    for t in texts:
        tok.encode_special_tokens = not special
        want = expected_ids(tok, t)
        got = strata_cli.tokenize(path, t.encode(), special=special)
        if got != want:
            bad.append(f"{t!r}: strata {got}, tokenizers {want}")
    return bad


@pytest.mark.parametrize("special", [True, False], ids=["special", "no-special"])
@pytest.mark.parametrize("name", TOKENIZERS)
def test_tokenizer_ids_match(name, special, tokenizer_files):
    path = tokenizer_files[name]
    tok = Tokenizer.from_file(path)
    tok.encode_special_tokens = not special  # `--no-special`: special tokens are text
    added = [t.content for t in tok.get_added_tokens_decoder().values()]
    rng = rng_for("tokenizer", name, special)
    texts = ADVERSARIAL + [random_text(rng, added) for _ in range(400)]
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    sep = specials[0] if special and specials else "\n"
    joined = sep.join(texts)
    want = expected_ids(tok, joined)
    got = strata_cli.tokenize(path, joined.encode(), special=special)
    if got != want:
        bad = narrow(tok, path, texts, special) or [
            f"(only the joined text differs) first difference at id {next(i for i, (a, b) in enumerate(zip(got + [None], want + [None])) if a != b)}"]
        pytest.fail(f"{name}: {len(bad)} strings tokenize differently:\n" + "\n".join(bad[:20]))


def byte_level(data: bytes):
    """GPT-2's byte -> printable character map, as the ByteLevel step applies it."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return "".join(table[b] for b in data)


def expected_invalid(tok, data: bytes):
    """Valid segments through `encode`, invalid runs through the BPE model."""
    text = data.decode("utf-8", errors="surrogateescape")  # invalid byte b -> U+DC00+b
    ids = []
    for invalid, run in itertools.groupby(text, lambda ch: 0xDC80 <= ord(ch) <= 0xDCFF):
        run = "".join(run)
        if invalid:
            ids += [t.id for t in tok.model.tokenize(byte_level(bytes(ord(c) - 0xDC00 for c in run)))]
        else:
            ids += expected_ids(tok, run)
    return ids


@pytest.mark.parametrize("name", TOKENIZERS)
def test_invalid_utf8_runs_are_byte_pretokens(name, tokenizer_files):
    path = tokenizer_files[name]
    tok = Tokenizer.from_file(path)
    rng = rng_for("invalid-utf8", name)
    cases = list(INVALID_UTF8)
    for _ in range(10):
        b = bytearray(random_text(rng, []).encode())
        for _ in range(int(rng.integers(1, 4))):
            b.insert(int(rng.integers(0, len(b) + 1)), int(rng.integers(0x80, 0x100)))
        cases.append(bytes(b))
    sep = next(t.content for t in tok.get_added_tokens_decoder().values() if t.special).encode()
    joined = sep.join(cases)
    if strata_cli.tokenize(path, joined) == expected_invalid(tok, joined):
        return
    bad = []
    for data in cases:
        got = strata_cli.tokenize(path, data)
        want = expected_invalid(tok, data)
        if got != want:
            bad.append(f"{data!r}: strata {got}, expected {want}")
    pytest.fail(f"{name}:\n" + "\n".join(bad[:20] or ["(only the joined input differs)"]))


@pytest.mark.parametrize("name", TOKENIZERS)
def test_post_processor_special_tokens_match(name, tokenizer_files):
    """`--add-special` against encode(add_special_tokens=True)."""
    path = tokenizer_files[name]
    tok = Tokenizer.from_file(path)
    for text in ["Hello world", "", "<|end_of_text|>x"]:
        want = tok.encode(text, add_special_tokens=True).ids
        args = ["tokenize", "--tokenizer", path, "--json", "--add-special", "-"]
        got = json.loads(strata_cli.run(*args, input=text.encode()).stdout)["ids"]
        assert got == want, f"{name}: {text!r}: strata {got}, tokenizers {want}"



@pytest.mark.parametrize("cls", [r"\p{L}", r"\p{N}", r"\s", r"[^\s\p{L}\p{N}]"])
def test_every_code_point_classes_as_upstream(cls, tmp_path):
    """strata's PCRE2 (Debian 12: Unicode 14 tables) and the reference's
    Oniguruma (Unicode 16) must agree on \\p{L}, \\p{N} and \\s for every
    code point; strata widens the classes by runtime/tokenizer_unicode.h.
    A tokenizer whose pre-tokenizer removes the class (Split, Removed) and
    whose BPE has only the 256 byte symbols turns the text of every code
    point into the bytes of those outside the class: the ids are equal iff
    both engines class every code point alike.  A failure names the first
    code point they disagree on."""
    from tokenizers import Regex, models, pre_tokenizers
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(cls), behavior="removed"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    path = str(tmp_path / "class.json")
    tok.save(path)
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]

    def same(a, b):
        t = "".join(chr(cp) for cp in cps[a:b])
        return strata_cli.tokenize(path, t.encode(), special=False) == expected_ids(tok, t)

    if same(0, len(cps)):
        return
    a, b = 0, len(cps)
    while b - a > 1:
        m = (a + b) // 2
        if not same(a, m):
            b = m
        else:
            a = m
    pytest.fail(f"{cls}: U+{cps[a]:04X} is classed differently by strata and tokenizers")
