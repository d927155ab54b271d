"""The hand-written callbacks' files, read back with the readers other tools use."""

from __future__ import annotations

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
