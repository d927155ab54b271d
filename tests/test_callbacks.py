"""The hand-written callbacks' files, read back with the readers other tools use."""

from __future__ import annotations

import pytest
import tensorflow as tf

from keras_resnet import callbacks as cb


def _scalars(folder) -> dict[tuple[str, int], float]:
    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                found[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    return found


def test_tensorboard_event_files_hold_the_epoch_scalars(tmp_path):
    writer = cb.TensorBoardScalars(tmp_path / "logs")
    writer.on_epoch_end(0, {"loss": 1.5, "accuracy": 0.5, "val_loss": 2.0, "val_accuracy": 0.25, "note": "x"})
    writer.on_epoch_end(1, {"loss": 0.75, "images_per_s": 123.0})
    writer.on_train_end()
    assert _scalars(tmp_path / "logs" / "train") == {
        ("epoch_loss", 1): 1.5, ("epoch_accuracy", 1): 0.5, ("epoch_loss", 2): 0.75, ("epoch_images_per_s", 2): 123.0}
    assert _scalars(tmp_path / "logs" / "validation") == {("epoch_loss", 1): 2.0, ("epoch_accuracy", 1): 0.25}


def test_tensorboard_logs_that_cannot_be_written_are_said_once_and_training_goes_on(tmp_path, monkeypatch):
    """A logs/ folder another user made, or a read-only one: TensorFlow's PermissionDeniedError ended the run with a
    traceback, losing the epoch (its checkpoint comes after the logs; walk)."""
    import io

    import tensorflow as tf

    def refused(logdir, *args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, f"{logdir}; Permission denied [Op:CreateSummaryFileWriter]")

    monkeypatch.setattr(tf.summary, "create_file_writer", refused)
    stream = io.StringIO()
    writer = cb.TensorBoardScalars(tmp_path / "logs", stream)
    for epoch in range(2):
        writer.on_epoch_end(epoch, {"loss": 1.0})
    writer.on_train_end()
    assert stream.getvalue() == (f"warning: TensorBoard logs cannot be written to {tmp_path / 'logs'} "
                                 f"({tmp_path / 'logs' / 'train'}; Permission denied [Op:CreateSummaryFileWriter]): "
                                 "training goes on without them\n")


def test_curves_are_drawn_after_the_first_epoch_then_throttled_and_at_the_end(tmp_path, monkeypatch):
    from keras_resnet import callbacks as cb

    drawn = []
    monkeypatch.setattr(cb, "plot_curves", lambda rows, path: drawn.append([r["epoch"] for r in rows]))
    clock = iter([0.0, 10.0, 20.0, 31.0, 31.0, 35.0, 36.0])  # each read of time.monotonic(), in order
    monkeypatch.setattr(cb.time, "monotonic", lambda: next(clock))
    writer = cb.HistoryWriter(tmp_path, [], plot_every_s=30.0)
    for epoch in range(4):
        writer.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    assert drawn == [[1], [1, 2, 3, 4]]  # epoch 1, then the first epoch 30 s later
    writer.on_train_end()
    assert drawn == [[1], [1, 2, 3, 4]]  # nothing new since
    writer.on_epoch_end(4, {"loss": 0.1})
    writer.on_train_end()
    assert drawn[-1] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in cb.read_history(tmp_path / "history.csv")] == [1, 2, 3, 4, 5]


def test_validation_and_saving_use_the_weight_averages_and_training_keeps_its_own_weights():
    """With --ema, fit's validation scores the moving averages; afterwards the model holds its training weights
    bit for bit, and ``saved_weights`` gives the averages for the trainable variables and the model's own BN
    statistics."""
    import keras
    import numpy as np

    from keras_resnet import _compat
    from keras_resnet.optim import make_optimizer

    def model_and_optimizer(ema):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4, 4, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))
        optimizer = make_optimizer("sgd", 0.5, 0.0, model, ema=ema)
        model.compile(optimizer, keras.losses.MeanSquaredError())
        return model, optimizer

    x = np.linspace(-1, 1, 8 * 4 * 4 * 3, dtype="float32").reshape(8, 4, 4, 3)
    y = np.eye(2, dtype="float32")[[0, 1, 1, 0, 1, 0, 0, 1]]
    plain, _ = model_and_optimizer(0.0)
    plain.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    model, optimizer = model_and_optimizer(0.5)
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(x, y),
                        callbacks=[cb.ValidateAverages()])
    for ours, theirs in zip(model.get_weights(), plain.get_weights()):  # the averages never fed back
        np.testing.assert_array_equal(ours, theirs)
    averages = {id(v): np.asarray(a) for v, a in _compat.ema_pairs(optimizer)}
    saved = cb.saved_weights(model)
    for variable, value in zip(model.weights, saved):
        expected = averages.get(id(variable), np.asarray(variable))
        np.testing.assert_array_equal(value, expected, err_msg=variable.path)
    assert {v.path for v in model.weights if id(v) not in averages} == {"bn/moving_mean", "bn/moving_variance"}
    assert not np.array_equal(saved[0], model.get_weights()[0])  # conv/kernel: the average is not the weights
    kept = model.get_weights()
    model.set_weights(saved)
    val_loss = model.evaluate(x, y, batch_size=4, verbose=0)
    model.set_weights(kept)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    plain_val = plain.evaluate(x, y, batch_size=4, verbose=0)
    assert val_loss != pytest.approx(plain_val, rel=1e-3)  # which weights were validated shows in the loss
