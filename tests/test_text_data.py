"""Byte corpora: the fortunes corpus and its checksum, downloads, windows, bpb, baselines,
and a tiny GPT that learns the corpus."""

import math
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core import ConfigError
from jaxcomp.data import text
from jaxcomp.data.text import TextData, bigram_bpb, download, sha256_of, unigram_bpb
from jaxcomp.flax.model import Model
from jaxcomp.models import get_model
from jaxcomp.models.lm import bits_per_byte, lm_loss, train_lm

HAVE_FORTUNES = all((pathlib.Path(text.FORTUNES_DIR) / f).is_file() for f in text.FORTUNES_FILES)
needs_fortunes = pytest.mark.skipif(not HAVE_FORTUNES,
                                    reason="apt-get install fortunes fortunes-min")


@needs_fortunes
def test_fortunes_corpus_checksum_and_split():
    data = text.fortunes()
    assert len(data.train) + len(data.valid) == text.FORTUNES_SIZE
    assert data.sha256 == text.FORTUNES_SHA256
    assert len(data.train) == round(0.9 * text.FORTUNES_SIZE)
    raw = text.fortunes_corpus()
    np.testing.assert_array_equal(data.valid, np.frombuffer(raw, np.uint8)[len(data.train):])


def test_fortunes_checksum_mismatch_and_missing_packages(tmp_path):
    for f in text.FORTUNES_FILES:
        (tmp_path / f).write_bytes(b"not the fortunes\n")
    with pytest.raises(ConfigError, match="version 1:1.99.1-7.3"):
        text.fortunes_corpus(tmp_path)
    assert len(text.fortunes_corpus(tmp_path, check=False)) == 17 * len(text.FORTUNES_FILES)
    (tmp_path / "zippy").unlink()
    with pytest.raises(ConfigError, match="apt-get install fortunes fortunes-min"):
        text.fortunes_corpus(tmp_path)


def test_download_file_url_cache_and_corruption(tmp_path):
    src = tmp_path / "src" / "corpus.txt"
    src.parent.mkdir()
    src.write_bytes(b"some public text\n" * 10)
    digest = sha256_of(src.read_bytes())
    cache = tmp_path / "cache"
    path = download(src.as_uri(), digest, cache=cache)
    assert path.read_bytes() == src.read_bytes() and path.parent == cache
    moved = src.with_name("moved.txt")
    src.rename(moved)  # the source is gone: a second call must come from the cache
    assert download(src.as_uri(), digest, cache=cache) == path
    path.write_bytes(b"corrupted")  # a bad cached copy is fetched again ... and fails here
    with pytest.raises(ConfigError, match="download of .* failed"):
        download(src.as_uri(), digest, cache=cache)
    moved.rename(src)
    assert download(src.as_uri(), digest, cache=cache).read_bytes() == src.read_bytes()
    with pytest.raises(ConfigError, match="does not match the expected"):
        download(src.as_uri(), "0" * 64, cache=tmp_path / "other")
    assert not (tmp_path / "other" / "corpus.txt").exists()  # a bad download is not kept
    # unpinned digest: recorded on first download, checked later
    p2 = download(src.as_uri(), None, cache=tmp_path / "pin")
    assert (tmp_path / "pin" / "corpus.txt.sha256").read_text().strip() == digest
    p2.write_bytes(b"changed")
    src.unlink()
    with pytest.raises(ConfigError, match="failed"):
        download(src.as_uri(), None, cache=tmp_path / "pin")


def test_load_corpus_from_a_zip_mirror(tmp_path):
    z = tmp_path / "mirror.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("enwik8", b"<page>wiki</page>" * 5)
    got = text.load_corpus("enwik8", url=z.as_uri(), sha256=sha256_of(z.read_bytes()),
                           cache=tmp_path / "c")
    assert got == b"<page>wiki</page>" * 5
    with pytest.raises(ConfigError, match="data.name"):
        text.load_corpus("wikitext")


def test_windows_are_deterministic_and_shifted():
    data = TextData.from_bytes(bytes(range(256)) * 8, name="toy")
    a = data.batch(seed=3, step=7, batch_size=5, context=10)
    b = data.batch(seed=3, step=7, batch_size=5, context=10)
    c = data.batch(seed=3, step=8, batch_size=5, context=10)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])
    np.testing.assert_array_equal(a["y"], (a["x"] + 1) % 256)  # the corpus counts up
    stacked = data.batches(3, 7, 2, 5, 10)
    np.testing.assert_array_equal(stacked["x"][0], a["x"])
    np.testing.assert_array_equal(stacked["x"][1], c["x"])
    w = data.eval_windows(10)
    n = (len(data.valid) - 1) // 10
    assert w["x"].shape == (n, 10)
    np.testing.assert_array_equal(w["x"].ravel(), data.valid[:n * 10])
    np.testing.assert_array_equal(w["y"].ravel(), data.valid[1:n * 10 + 1])
    with pytest.raises(ConfigError, match="data.context"):
        data.batch(0, 0, 2, len(data.train))


def _const_model(logits_fn):
    return Model(lambda key, x: ({"w": jnp.zeros(())}, {}),
                 lambda p, s, x, train=False, rng=None: (logits_fn(x) + p["w"], s), "const")


@pytest.mark.parametrize("batch_size", [7, 64])
def test_bits_per_byte_of_uniform_and_hand_models(batch_size):
    data = TextData.from_bytes(np.random.default_rng(0).bytes(3000), name="rand")
    uniform = _const_model(lambda x: jnp.zeros((*x.shape, 256)))
    assert bits_per_byte(uniform, {"w": jnp.zeros(())}, {}, data, context=16,
                         batch_size=batch_size) == pytest.approx(8.0, abs=1e-6)
    # a model that gives the true next byte probability 1/2 (and 1/510 to the others)
    w = data.eval_windows(16)
    peaked = _const_model(lambda x: jax.nn.one_hot(jnp.asarray(x) * 0 + jnp.asarray(w["y"]),
                                                   256) * math.log(255.0))
    got = bits_per_byte(peaked, {"w": jnp.zeros(())}, {}, w, context=16, batch_size=len(w["x"]))
    assert got == pytest.approx(1.0, abs=1e-5)
    loss, aux = lm_loss(jnp.zeros((2, 3, 256)), {"y": jnp.zeros((2, 3), jnp.int32)})
    assert float(aux["bpb"]) == pytest.approx(8.0, abs=1e-6)


def test_baselines_by_hand():
    train = np.frombuffer(b"aab", np.uint8)
    valid = np.frombuffer(b"xab", np.uint8)  # targets 'a', 'b'
    pa, pb = 3 / 259, 2 / 259
    assert unigram_bpb(train, valid) == pytest.approx(-(np.log2(pa) + np.log2(pb)) / 2)
    # bigram: p(a|x) = 1/256, p(b|a) = (1+1)/(2+256)
    assert bigram_bpb(train, valid) == pytest.approx(-(np.log2(1 / 256) + np.log2(2 / 258)) / 2)


@needs_fortunes
def test_tiny_gpt_learns_fortunes_below_the_baselines():
    data = text.fortunes()
    uni, bi = unigram_bpb(data.train, data.valid), bigram_bpb(data.train, data.valid)
    assert bi < uni - 0.5  # 3.78 < 4.87
    model = get_model("gpt", input_shape=(64,), num_layers=2, width=64, num_heads=4)
    state, hist = train_lm(model, data, optax.adam(2e-2, b2=0.99), steps=150, batch_size=32,
                           context=64, seed=0, eval_every=75, max_eval_windows=128)
    assert [h["step"] for h in hist] == [75, 150]
    assert hist[-1]["valid_bpb"] < uni - 0.3, (hist, uni)
    assert hist[-1]["tokens_per_s"] > 0 and int(state.step) == 150
