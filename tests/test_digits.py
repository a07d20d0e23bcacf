"""Learning on real data: scikit-learn's handwritten digits."""

import numpy as np
import pytest

from bpcore.demo import digits_network, load_digits_split


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digits_reach_97_percent_test_accuracy(dtype):
    X_train, X_test, y_train, y_test = load_digits_split(seed=0)
    net = digits_network(seed=0, dtype=dtype)
    history = net.fit(X_train, y_train, epochs=40, batch_size=32)
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    assert accuracy >= 0.97, accuracy
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    # Stratified 80/20 split of 1797 images.
    assert (len(X_train), len(X_test)) == (1437, 360)
    assert np.bincount(y_test).min() >= 35
