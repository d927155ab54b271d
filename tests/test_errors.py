from __future__ import annotations

from keras_resnet.errors import first_line


def test_first_line_takes_the_first_non_empty_line_and_survives_an_empty_message():
    assert first_line(ValueError("\n  bad shape  \nTraceback ...\n")) == "bad shape"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("x" * 500)) == "x" * 200


def test_counted_says_one_without_a_plural():
    """'1 unreadable files skipped', '1 epoch x 1 steps' and '1 images in 0.2 s' (new-user walk)."""
    from keras_resnet.errors import counted

    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(0.5, "epoch") == "0.5 epochs" and counted(1.0, "step") == "1 step"


def test_first_five_lists_five_and_says_there_are_more():
    from keras_resnet.errors import first_five

    assert first_five("abcde") == "a, b, c, d, e" and first_five("abcdef") == "a, b, c, d, e ..."
    assert first_five([3, 1]) == "3, 1" and first_five([]) == ""


def test_counted_takes_an_irregular_plural():
    from keras_resnet.errors import counted

    assert [counted(n, "batch", "batches") for n in (1, 2)] == ["1 batch", "2 batches"]
