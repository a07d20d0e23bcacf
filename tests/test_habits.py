"""Keras's and PyTorch's habits, met or answered: summary, count_params, net(x), a short repr,
optimizer names in any case, LearningRateScheduler's two forms, Callback.model, and error
messages that say what to do."""

from __future__ import annotations

import os

import numpy as np
import pytest
from optional import require

import bpcore as bp


def mlp():
    return bp.Network(
        [bp.Dense(4, 8), bp.BatchNorm1d(8), bp.ReLU(), bp.Dense(8, 3)],
        loss="cross_entropy",
        seed=0,
    )


def test_summary_is_a_table_of_layers_shapes_and_counts():
    lines: list[str] = []
    mlp().summary(print_fn=lines.append)
    text = lines[0].splitlines()
    rows = [line.split() for line in text if line[:1].isdigit()]
    assert rows == [
        ["0", "Dense", "(None,", "8)", "40"],  # 4·8 + 8
        ["1", "BatchNorm1d", "(None,", "8)", "32"],  # 8 + 8, and 8 + 8 running statistics
        ["2", "ReLU", "(None,", "8)", "0"],
        ["3", "Dense", "(None,", "3)", "27"],  # 8·3 + 3
    ]
    assert "Total params: 99 (396 B)" in text
    assert "Trainable params: 83 (332 B)" in text
    assert "Non-trainable params: 16 (64 B)" in text
    assert all(len(line) <= 80 for line in text)


def test_summary_shows_the_shapes_the_core_gives_convolutions_and_pools():
    net = bp.Network(
        [bp.Reshape((1, 8, 8)), bp.Conv2d(1, 4, 3, padding=1), bp.ReLU(), bp.MaxPool2d(2),
         bp.Flatten(), bp.Dense(64, 10)],
        loss="cross_entropy",
    )  # fmt: skip
    lines: list[str] = []
    net.summary(print_fn=lines.append)
    shapes = [line[28:48].strip() for line in lines[0].splitlines() if line[:1].isdigit()]
    assert shapes == [
        "(None, 1, 8, 8)",
        "(None, 4, 8, 8)",
        "(None, 4, 8, 8)",
        "(None, 4, 4, 4)",
        "(None, 64)",
        "(None, 10)",
    ]


def test_count_params_as_keras_and_as_torch():
    net = mlp()
    assert net.count_params() == 99
    assert net.count_params(trainable_only=True) == sum(p.size for p in net.parameters().values())
    with pytest.raises(TypeError, match="trainable_only"):
        net.count_params(trainable_only=1)


def test_calling_the_network_is_forward():
    net = mlp()
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(net(X), net.forward(X))


def test_repr_is_short_and_says_what_differs_from_the_defaults():
    net = bp.Network(
        [bp.Dense(3, 4), bp.LeakyReLU(0.2), bp.Dense(4, 2, bias=False)],
        loss="cross_entropy",
        optimizer=bp.SGD(lr=0.5, momentum=0.9),
    )
    assert repr(net) == (
        "Network(\n"
        "  (0): Dense(in_features=3, out_features=4)\n"
        "  (1): LeakyReLU(negative_slope=0.2)\n"
        "  (2): Dense(in_features=4, out_features=2, bias=False)\n"
        "  loss=CrossEntropyLoss(), optimizer=SGD(lr=0.5, momentum=0.9),\n"
        "  dtype='float32', seed=0\n"
        ")"
    )


@pytest.mark.parametrize("name", ["Adam", "adam", "ADAM", "AdamW", "RMSprop", "SGD", "Adagrad"])
def test_optimizer_names_in_any_case(name):
    net = bp.Network([bp.Dense(2, 1)], optimizer=name)
    assert type(net.optimizer).__name__.lower() == name.lower()


def test_an_unknown_optimizer_name_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"did you mean 'adam'\?"):
        bp.Network([bp.Dense(2, 1)], optimizer="Adma")


@pytest.mark.parametrize(
    "schedule",
    [lambda epoch: 0.1 / (epoch + 1), lambda epoch, lr: 0.1 / (epoch + 1)],
    ids=["epoch", "epoch-lr"],
)
def test_learning_rate_scheduler_takes_either_form(schedule):
    net = bp.Network([bp.Dense(1, 1)], seed=0)
    h = net.fit(
        np.ones((4, 1)), np.ones(4), epochs=3, callbacks=[bp.LearningRateScheduler(schedule)]
    )
    np.testing.assert_allclose(h.history["lr"], [0.1, 0.05, 0.1 / 3])


def test_learning_rate_scheduler_gets_the_current_rate_in_the_two_argument_form():
    net = bp.Network([bp.Dense(1, 1)], optimizer=bp.SGD(lr=0.4), seed=0)
    halve = bp.LearningRateScheduler(lambda epoch, lr: lr / 2)
    h = net.fit(np.ones((4, 1)), np.ones(4), epochs=3, callbacks=[halve])
    assert h.history["lr"] == [0.2, 0.1, 0.05]


def test_a_schedule_that_takes_no_epoch_is_refused():
    with pytest.raises(TypeError, match="neither"):
        bp.LearningRateScheduler(lambda: 0.1)


def test_callback_model_is_the_network_as_keras_names_it():
    seen = []

    class Spy(bp.Callback):
        def on_train_begin(self, logs):
            seen.append(self.model)

    net = bp.Network([bp.Dense(1, 1)])
    net.fit(np.ones((2, 1)), np.ones(2), callbacks=[Spy()])
    assert seen == [net]


def test_a_label_out_of_range_names_the_classes_inclusively():
    net = bp.Network([bp.Dense(2, 3)], loss="cross_entropy")
    with pytest.raises(
        ValueError, match=r"label 3 at index 1 is not a class; the classes are 0 to 2"
    ):
        net.fit(np.zeros((2, 2)), [0, 3])


def test_string_and_one_hot_labels_say_what_to_pass():
    net = bp.Network([bp.Dense(2, 3)], loss="cross_entropy")
    X = np.zeros((3, 2))
    with pytest.raises(TypeError, match=r"strings such as 'cat'.*np\.unique"):
        net.fit(X, ["cat", "dog", "cat"])
    with pytest.raises(ValueError, match=r"one-hot.*y\.argmax\(axis=1\)"):
        net.fit(X, np.eye(3))


def test_nan_in_inputs_or_targets_is_named_by_row_and_column():
    net = bp.Network([bp.Dense(3, 2)])
    X, Y = np.zeros((4, 3)), np.zeros((4, 2))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"X: contains NaN or infinity \(NaN at row 2, column 1"):
        net.fit(X, Y)
    X[2, 1] = 0
    Y[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"y: contains NaN or infinity \(inf at row 3, column 0"):
        net.fit(X, Y)


def test_a_save_into_a_missing_folder_names_the_users_path(tmp_path):
    net = bp.Network([bp.Dense(2, 1)])
    path = tmp_path / "no such folder" / "model.safetensors"
    with pytest.raises(FileNotFoundError) as e:
        net.save(path)
    assert e.value.filename == str(path) and str(path.parent) in str(e.value)
    assert ".tmp" not in str(e.value)
    (tmp_path / "a file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        net.save(tmp_path / "a file" / "model.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["a file"]


def test_a_torch_tensor_that_requires_grad_is_read_by_value():
    torch = require("torch", install="bpcore[torch]")
    net = bp.Network([bp.Dense(3, 2)], dtype="float64")
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(net(x), net(x.detach().numpy()))
    net.fit(x, torch.zeros(4, 2, requires_grad=True), epochs=1)
    labels = bp.Network([bp.Dense(3, 2)], loss="cross_entropy")
    labels.fit(x, torch.tensor([0, 1, 1, 0]))
