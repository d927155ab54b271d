"""keras-resnet: ResNet-18..152 for Keras 3, from training to int8 TFLite on phones and Edge TPUs.

Names are imported on first use, so ``import keras_resnet.specs`` (as the CLI does to list the depths)
does not start Keras and TensorFlow. Importing it before TensorFlow turns TensorFlow's oneDNN CPU kernels on
for x86, unless ``TF_ENABLE_ONEDNN_OPTS`` says otherwise (see ``keras_resnet.cpu``).
"""

from importlib import import_module

from keras_resnet.cpu import enable_onednn

__version__ = "0.1.0"

enable_onednn()

_EXPORTS = {
    "KresError": "keras_resnet.errors",
    "DEPTHS": "keras_resnet.specs",
    "VARIANTS": "keras_resnet.specs",
    "ModelMeta": "keras_resnet.meta",
    "resnet": "keras_resnet.model",
    "ResNet18": "keras_resnet.model",
    "ResNet34": "keras_resnet.model",
    "ResNet50": "keras_resnet.model",
    "ResNet101": "keras_resnet.model",
    "ResNet152": "keras_resnet.model",
    "backbone": "keras_resnet.model",
    "feature_model": "keras_resnet.model",
    "stage_output_names": "keras_resnet.model",
    "summarize": "keras_resnet.summary",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
