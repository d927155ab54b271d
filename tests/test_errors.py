from __future__ import annotations

from keras_resnet.errors import first_line


def test_first_line_takes_the_first_non_empty_line_and_survives_an_empty_message():
    assert first_line(ValueError("\n  bad shape  \nTraceback ...\n")) == "bad shape"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("x" * 500)) == "x" * 200
