"""Input pipeline: training images/s per core of ``keras_resnet.data`` on a folder of real-sized JPEGs, against a
naive tf.data pipeline (read, decode the whole JPEG, random crop, resize; one element at a time, no prefetch)
in the same command.

The JPEGs are generated once and cached: ~500x375 like ImageNet's median photo, with photographic statistics
(smooth random colour fields, sharp-edged shapes, sensor-like noise) so the entropy decoder works as hard as on
photos, saved at quality 90. Each core setting runs in its own process pinned with ``sched_setaffinity`` before
TensorFlow starts, so "1 core" really is one core; the two pipelines alternate inside that process. On a shared
machine wall-clock rates swing with other people's load, so images per CPU second of the process (all its
threads) are reported beside images/s per core.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from keras_resnet.bench.common import machine, machine_line, markdown_table, write_results
from keras_resnet.errors import KresError, counted

TARGET = 1.5  # ours vs naive, images/s per core
OURS = "keras_resnet.data (fused decode+crop, uint8 batches, parallel, prefetch)"
NAIVE = "naive (read, decode_jpeg, crop, resize; float32 batches, sequential)"


@dataclass
class Config:
    images: int = 640  # generated JPEGs; load_datasets holds back val_split (20%) of them
    classes: int = 4
    width: int = 500
    height: int = 375
    quality: int = 90
    image_size: int = 224
    batch_size: int = 64
    batches: int = 6  # timed batches per pipeline per round
    warmup: int = 3  # untimed batches of each fresh iterator (thread start-up, autotune's first steps)
    rounds: int = 5  # the pipelines alternate; the median over rounds is reported
    cores: tuple[int, ...] = (1, 0)  # core counts to pin to; 0: every core this process may use
    cache_dir: str | None = None  # where the JPEGs are kept; default <tmp>/kres-bench-cache
    results_name: str = "pipeline"


def available_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


# --- the data ---------------------------------------------------------------------------------------------------

def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A uint8 [H, W, 3] image with a photo's mix of smooth regions, edges and fine noise."""
    from PIL import Image, ImageDraw, ImageFilter

    field = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((3, 1.0), (9, 0.5), (27, 0.25), (81, 0.12)):  # 1/f-like: coarse dominates
        grid = rng.normal(0, 1, (cells * height // width + 2, cells + 2, 3)).astype(np.float32)
        low = Image.fromarray(np.uint8(np.clip(128 + 40 * grid, 0, 255)))
        field += weight * (np.asarray(low.resize((width, height), Image.BICUBIC), np.float32) - 128)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    image = Image.fromarray(np.uint8(np.clip(base + field, 0, 255)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 16))):  # objects with sharp edges
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        # (at least 20 px across: a photo under 42 px gets objects that spill over its edge, as PIL draws them)
        x1, y1 = x0 + rng.integers(20, max(21, width // 2)), y0 + rng.integers(20, max(21, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([int(x0), int(y0), int(x1), int(y1)], fill=colour, outline=(0, 0, 0), width=int(rng.integers(1, 4)))
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.2))))  # lens softness
    noisy = np.asarray(image, np.float32) + rng.normal(0, 6, (height, width, 3))  # sensor noise
    return np.uint8(np.clip(noisy, 0, 255))


def jpeg_folder(cfg: Config, say: Callable[[str], object] = lambda line: None) -> Path:
    """The cached folder ``<class>/<n>.jpg`` for ``cfg``, generated on first use (a marker file says complete);
    ``say`` gets a line when they are generated."""
    from PIL import Image

    root = Path(cfg.cache_dir) if cfg.cache_dir else Path(tempfile.gettempdir()) / "kres-bench-cache"
    folder = root / f"jpegs-{cfg.images}x{cfg.width}x{cfg.height}-q{cfg.quality}-c{cfg.classes}"
    marker = folder / "complete.json"
    if marker.is_file():
        return folder
    say(f"generating {counted(cfg.images, 'JPEG')} of {cfg.width}x{cfg.height} in {folder} (once) ...")
    rng = np.random.default_rng(0)
    for i in range(cfg.images):
        class_dir = folder / f"class_{i % cfg.classes}"
        class_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(rng, cfg.width, cfg.height)).save(class_dir / f"{i:05d}.jpg", quality=cfg.quality)
    sizes = [p.stat().st_size for p in folder.glob("*/*.jpg")]
    marker.write_text(json.dumps({"images": len(sizes), "mean_bytes": float(np.mean(sizes))}))
    return folder


# --- the two pipelines (built inside the pinned worker process) ------------------------------------------------

def ours_pipeline(folder: Path, cfg: Config):
    from keras_resnet.data import DataConfig, load_datasets

    data = load_datasets(DataConfig(data_dir=str(folder), image_size=cfg.image_size, batch_size=cfg.batch_size))
    return data.train.repeat(), data.num_train


def naive_pipeline(folder: Path, cfg: Config):
    """What a first tf.data pipeline looks like: decode the whole JPEG, then crop (the same random-resized-crop
    window distribution as ours), resize, flip; a plain ``map`` and ``batch``, nothing tuned. Its images stay the
    float32 that ``tf.image.resize`` returns; ours are rounded to uint8."""
    import tensorflow as tf

    from keras_resnet.augment import random_crop_window

    paths = sorted(str(p) for p in folder.glob("*/*.jpg"))
    classes = sorted({Path(p).parent.name for p in paths})
    labels = [classes.index(Path(p).parent.name) for p in paths]
    size = cfg.image_size

    def load(path, label, seed):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        window = random_crop_window(tf.shape(image)[:2], seed)
        crop = tf.slice(image, [window[0], window[1], 0], [window[2], window[3], 3])
        crop = tf.image.resize(crop, [size, size])
        crop = tf.image.stateless_random_flip_left_right(crop, seed)
        return crop, tf.one_hot(label, len(classes))

    seeds = tf.data.Dataset.random(seed=0).batch(2)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=0)
    ds = tf.data.Dataset.zip((ds, seeds)).map(lambda example, seed: load(*example, seed))
    return ds.batch(cfg.batch_size, drop_remainder=True).repeat(), len(paths)


def _images_per_s(iterator, cfg: Config) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process, all its threads together)."""
    for _ in range(cfg.warmup):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(cfg.batches):
        images, _ = next(iterator)
    images.numpy()  # the batch is materialised
    count = cfg.batch_size * cfg.batches
    return count / (time.perf_counter() - start), count / max(time.process_time() - cpu_start, 1e-9)


def measure_here(folder: Path, cfg: Config) -> dict:
    """Both pipelines in this process, alternating ``cfg.rounds`` times: for each, the median images per wall
    second and per CPU second over the rounds, and every round's pair."""
    pipelines = {"naive": naive_pipeline(folder, cfg)[0], "ours": ours_pipeline(folder, cfg)[0]}
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
    for _ in range(cfg.rounds):
        for name, dataset in pipelines.items():
            # A fresh iterator each time, dropped after: a live one keeps filling its prefetch buffers in the
            # background, which would steal the other pipeline's CPU and hand its own timing ready batches.
            iterator = iter(dataset)
            rounds[name].append(_images_per_s(iterator, cfg))
            del iterator
            gc.collect()
    return {name: {"wall": float(np.median([r[0] for r in pairs])), "cpu": float(np.median([r[1] for r in pairs])),
                   "rounds": pairs} for name, pairs in rounds.items()}


def _worker() -> None:
    """Entry point of the pinned process: argv[1] is the JSON of (folder, config)."""
    args = json.loads(sys.argv[1])
    cfg = Config(**{**args["config"], "cores": tuple(args["config"]["cores"])})
    print("RESULT " + json.dumps(measure_here(Path(args["folder"]), cfg)), flush=True)


def measure_pinned(folder: Path, cfg: Config, cpus: list[int]) -> dict:
    """Run :func:`measure_here` in a fresh Python pinned to ``cpus`` (set before TensorFlow makes threads)."""
    code = "from keras_resnet.bench.pipeline import _worker; _worker()"
    arg = json.dumps({"folder": str(folder), "config": asdict(cfg)})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, env=env,
                          preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise KresError(f"pipeline benchmark worker on cores {cpus} failed (exit {proc.returncode}): {tail}")


def run(cfg: Config, say: Callable[[str], object] = lambda line: None) -> dict:
    """Measure both pipelines at each core count; write JSON and markdown; return the payload. ``say`` gets a
    line as each core count begins and ends."""
    cores = available_cores()
    if any(c < 0 or c > len(cores) for c in cfg.cores):
        raise KresError(f"--cores must be between 1 and {len(cores)} (0: all {len(cores)})")
    if cfg.images * 0.8 < cfg.batch_size or cfg.batches < 1:
        raise KresError("the pipeline benchmark needs --images of at least 1.25x --batch-size and --batches >= 1")
    folder = jpeg_folder(cfg, say)
    rows, ratios = [], []
    for count in cfg.cores:
        cpus = cores[: count or len(cores)]
        say(f"{counted(len(cpus), 'core')}: both pipelines, {counted(cfg.rounds, 'round')} of "
            f"{counted(cfg.batches, 'batch', 'batches')} each, in a process of their own ...")
        result = measure_pinned(folder, cfg, cpus)
        say(f"{counted(len(cpus), 'core')}: ours {result['ours']['wall'] / len(cpus):,.1f} images/s per core, "
            f"naive {result['naive']['wall'] / len(cpus):,.1f}")
        figures = {}
        for key, name in (("naive", NAIVE), ("ours", OURS)):
            figures[key] = {"images_per_s_per_core": result[key]["wall"] / len(cpus),
                            "images_per_cpu_s": result[key]["cpu"]}
            rows.append({"pipeline": name, "cores": len(cpus), "images_per_s": result[key]["wall"],
                         **figures[key], "rounds": result[key]["rounds"]})
        for measure, label in (("images_per_s_per_core", "images/s per core (wall clock / cores)"),
                               ("images_per_cpu_s", "images per CPU second")):
            ours, naive = figures["ours"][measure], figures["naive"][measure]
            ratios.append({"ratio": f"ours vs naive, {label}", "cores": len(cpus), "ours": ours, "naive": naive,
                           "value": ours / naive, "target": TARGET, "met": ours / naive >= TARGET})
    stats = json.loads((folder / "complete.json").read_text())
    payload = {"benchmark": "pipeline", "config": asdict(cfg), "machine": machine(), "data": {
        "folder": str(folder), **stats}, "rows": rows, "ratios": ratios, "load": os.getloadavg()}
    m = payload["machine"]
    title = (f"Input pipeline, {cfg.images} JPEGs {cfg.width}x{cfg.height} q{cfg.quality} "
             f"(mean {stats['mean_bytes'] / 1000:.0f} kB) -> {cfg.image_size} px, batch {cfg.batch_size}, on "
             f"{machine_line(m, payload['load'])}\n\n")
    table = (title + markdown_table(["pipeline", "cores", "images_per_s", "images_per_s_per_core", "images_per_cpu_s"],
                                   rows) + "\n"
             + markdown_table(["ratio", "cores", "value", "target", "met"], ratios))
    payload["results_file"] = str(write_results(cfg.results_name, payload, table))
    payload["table"] = table
    return payload
