"""torchvision's training step, the peer of the throughput benchmark, run in a process of its own.

This module imports neither Keras nor TensorFlow, so the peer's process holds no other framework's threads. The
process stays up for the whole measurement and times a round whenever it is asked, so that its rounds can
alternate with ours: a shared machine's load then falls on both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

from keras_resnet.bench.common import warmed_up

READY, ROUND = "ready", "round"  # the peer's first answer; what the measuring process writes to ask for a round


def step_rounds(cfg: dict, compiled: bool) -> Callable[[], float]:
    """Build torchvision's ResNet training step (channels_last; bf16 autocast under mixed_bfloat16), warm it up
    (``cfg["warmup"]`` steps: ``torch.compile`` compiles here) and return a round: images/s of ``cfg["steps"]``
    timed steps after one untimed step. On a GPU each round ends by handing its cached activations back, so that
    the peer waiting for its next round holds only its weights and optimizer state."""
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
    release = torch.cuda.empty_cache if device == "cuda" else (lambda: None)
    return warmed_up(step, batch, cfg["steps"], cfg["warmup"], sync, after=release)


class Peer:
    """torchvision's step in a fresh Python process: in the measuring one, TensorFlow's thread pools, idle but
    alive, slowed torch's OpenMP threads up to 10x on 2 cores (ResNet-50: 4 against 37 images/s). Starting it
    builds and warms the step up; ``round()`` times one round there. The process ending early is raised as
    RuntimeError with its last line of stderr and its exit status."""

    def __init__(self, cfg: dict, compiled: bool):
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (open while the process lives; close())
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, json.dumps(cfg), "1" if compiled else "0"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        except BaseException:
            self._stderr.close()
            raise
        try:
            ready = self._answer()
            if ready != READY:
                raise RuntimeError(f"the peer's process said {ready!r} where it should say {READY!r}")
        except BaseException:
            self.close()
            raise

    def round(self) -> float:
        try:
            self._process.stdin.write(ROUND + "\n")
            self._process.stdin.flush()
        except OSError:  # it has ended (a broken pipe): say how, below
            pass
        return float(self._answer())

    def close(self) -> None:
        """End the process (it exits when its input closes) and forget its output."""
        try:
            self._process.stdin.close()
            self._process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        self._stderr.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _answer(self) -> str:
        line = self._process.stdout.readline()
        if line:
            return line.strip()
        status = self._process.wait()
        self._stderr.seek(0)
        last = (self._stderr.read().strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{last} (the peer's process ended with exit status {status})")


def _serve(cfg: dict, compiled: bool) -> None:
    """The peer's process: build and warm up, say so, then time a round for each request until input closes."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a library's prints must not read as an answer
    one_round = step_rounds(cfg, compiled)
    print(READY, file=answers, flush=True)
    for request in sys.stdin:
        if request.strip() == ROUND:
            print(one_round(), file=answers, flush=True)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]), sys.argv[2] == "1")
