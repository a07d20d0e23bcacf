"""One network shared by many Python threads.

Inference calls release the GIL and run side by side with results equal to serial ones. A call
that changes the network while another thread uses it (or a read while it trains) is refused
with bp.NetworkBusyError before it changes anything: weights are never torn, and the network
ends exactly where a serial replay of the accepted steps puts it.
"""

import contextlib
import threading
import time

import numpy as np

import bpcore as bp

rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 32))
Y = rng.integers(0, 5, size=4000)


def network():
    return bp.Network(
        [bp.Dense(32, 64), bp.ReLU(), bp.Dense(64, 5)],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=1e-2),
        dtype="float64",
        seed=1,
    )


def run_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)


def test_concurrent_predictions_equal_serial_ones():
    net = network()
    serial = {k: net.forward(X[k * 500 : (k + 1) * 500]) for k in range(8)}
    evaluated = net.evaluate(X, Y)
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(5):
                out = net.forward(X[k * 500 : (k + 1) * 500])
                np.testing.assert_array_equal(out, serial[k])
                assert net.evaluate(X, Y) == evaluated
            results[k] = net.predict(X[k * 500 : (k + 1) * 500])
        except BaseException as e:
            errors.append(e)

    run_threads([lambda k=k: work(k) for k in range(8)])
    assert not errors, errors
    for k in range(8):
        np.testing.assert_array_equal(results[k], serial[k].argmax(axis=1))


def test_training_shared_with_predicting_threads_is_refused_or_consistent():
    net = network()
    probe = X[:256]
    snapshots = [net.parameters()]  # the weights after each accepted step, in order
    accepted = []  # the batches of the accepted steps
    predictions = []
    errors = []
    stop = threading.Event()

    everyone = threading.Barrier(8)

    def trainer():
        try:
            everyone.wait()
            k = 0
            while len(accepted) - accepted.count("fit") < 25 and k < 10**6:
                batch = slice((k * 64) % 3936, (k * 64) % 3936 + 64)
                k += 1
                try:
                    net.train_step(X[batch], Y[batch])
                except bp.NetworkBusyError:
                    continue
                accepted.append(batch)
                snapshots.append(net.parameters())
                while len(accepted) % 5 == 0:  # a fit too, retried until accepted
                    try:
                        net.fit(X[:512], Y[:512], epochs=1, batch_size=128, shuffle=False)
                    except bp.NetworkBusyError:
                        continue
                    accepted.append("fit")
                    snapshots.append(net.parameters())
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    def predictor():
        try:
            everyone.wait()
            while not stop.is_set():
                with contextlib.suppress(bp.NetworkBusyError):
                    predictions.append(net.forward(probe))
                time.sleep(0.001)  # refusal never waits: leave the trainer gaps to step in
        except BaseException as e:
            errors.append(e)

    run_threads([trainer] + [predictor] * 7)
    assert not errors, errors
    assert len([a for a in accepted if a != "fit"]) == 25

    # Serial replay of the accepted steps ends on the same weights, bit for bit.
    replay = network()
    for step in accepted:
        if step == "fit":
            replay.fit(X[:512], Y[:512], epochs=1, batch_size=128, shuffle=False)
        else:
            replay.train_step(X[step], Y[step])
    final = net.parameters()
    for name, value in replay.parameters().items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)

    # Every prediction is the output of one consistent set of weights: never torn.
    outputs = []
    for params in snapshots:
        replay.set_parameters(params)
        outputs.append(replay.forward(probe))
    assert predictions, "no prediction ran"
    for out in predictions:
        assert any(np.array_equal(out, o) for o in outputs)


def test_busy_error_is_a_runtime_error_naming_the_method():
    net = network()
    started, release, overlapped = threading.Event(), threading.Event(), threading.Event()

    errors = []

    def trainer():
        # Fits again until a prediction has overlapped one (a whole fit can, rarely, run
        # between two predictions); the predictions may refuse a fit (between epochs) too.
        try:
            started.set()
            deadline = time.monotonic() + 30
            while not overlapped.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(bp.NetworkBusyError):
                    net.fit(X, Y, epochs=30, batch_size=32)
        except BaseException as e:
            errors.append(e)
        finally:
            release.set()

    t = threading.Thread(target=trainer)
    t.start()
    started.wait()
    seen = None
    while not release.is_set() and seen is None:
        try:
            net.predict(X[:10])
        except bp.NetworkBusyError as e:
            seen = e
            overlapped.set()
    t.join()
    assert not errors, errors
    assert seen is not None, "fit finished before a prediction overlapped it"
    assert isinstance(seen, RuntimeError)
    assert "busy" in str(seen)
    assert "predict cannot run" in str(seen)


def test_the_native_network_itself_refuses_with_network_busy_error():
    # The binding raises the error where its lock is taken (no message is matched): a read of
    # the native network while another thread trains it.
    net = network()
    native = net.native
    x, y = np.ascontiguousarray(X), np.ascontiguousarray(Y, dtype=np.int64)
    seen = []

    def train():
        for _ in range(500):
            native.fit_epoch(x, y, 32, True)
            if seen:
                return

    t = threading.Thread(target=train)
    t.start()
    while t.is_alive() and not seen:
        try:
            native.forward(x[:4])
        except bp.NetworkBusyError as e:
            seen.append(e)
    t.join()
    assert seen, "no read overlapped the training"
    assert "forward cannot run" in str(seen[0])
