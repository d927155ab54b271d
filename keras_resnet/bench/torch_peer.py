"""torchvision's training step, the peer of the throughput benchmark, run in a process of its own.

This module imports neither Keras nor TensorFlow, so the peer's process holds no other framework's threads.
"""

from __future__ import annotations

import json
import subprocess
import sys

from keras_resnet.bench.common import images_per_second


def step_rate(cfg: dict, compiled: bool) -> float:
    """Images/s of torchvision's ResNet training step (channels_last; bf16 autocast under mixed_bfloat16)."""
    import torch

    from keras_resnet.weights import import_torchvision

    torchvision = import_torchvision()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch, size, classes = cfg["batch_size"], cfg["image_size"], cfg["num_classes"]
    model = getattr(torchvision.models, f"resnet{cfg['depth']}")(num_classes=classes)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    autocast = cfg["precision"] == "mixed_bfloat16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    if compiled:
        step = torch.compile(step)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return images_per_second(step, batch, cfg["steps"], cfg["warmup"], sync)


def run_isolated(cfg: dict, compiled: bool) -> float:
    """``step_rate`` in a fresh Python process; its error, if any, is raised here as RuntimeError."""
    done = subprocess.run([sys.executable, "-m", __name__, json.dumps(cfg), "1" if compiled else "0"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or "no output").splitlines()
        raise RuntimeError(lines[-1])
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(step_rate(json.loads(sys.argv[1]), sys.argv[2] == "1"))
