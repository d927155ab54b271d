"""What an app that reads a .tflite's outputs by name sees: LiteRT's signature runner."""

import numpy as np


def signature_outputs(content: bytes, image: np.ndarray) -> dict[str, np.ndarray]:
    """The ``serving_default`` signature runner's outputs for one raw-pixel ``image`` [H,W,3] (cast to the
    model's input dtype: integer-valued pixels pass a uint8 input with scale 1 as they are), keyed by name."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner("serving_default")
    (name, detail), = runner.get_input_details().items()
    return runner(**{name: np.round(image[None]).astype(detail["dtype"])})
