"""Shared test settings: TensorFlow backend, quiet logs, small inputs."""

import fcntl
import gc
import io
import os
import sys

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist each worker, and every kres process it starts, gets its share of the CPU cores for
    TensorFlow's op thread pools (and torch's OpenMP): by default each sized itself to every core, so two workers on
    two cores ran four busy threads on two cores. Set before TensorFlow is imported; a value in the environment is
    kept. On 2 cores (AMD EPYC Zen 3, December 2026) test_runs_safety and test_train took 499 s of test work with
    the defaults and 461 s with one thread a pool, one run after the other.
    The numerics compared within a test (a resumed run against an uninterrupted one) run under the same setting."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        from keras_resnet.bench.pipeline import available_cores  # imports neither TensorFlow nor Keras

        share = str(max(1, len(available_cores()) // workers))
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(name, share)


_share_the_cores_between_workers()

# XLA's code generation at LLVM's optimization level 1 rather than 2, in the processes that compile with XLA: the
# JAX backend's training tests and the compiled optimizer update. Compiling is most of their time and level 1
# compiles faster; the tests check results, not speed, and the JAX-against-TensorFlow comparison holds within its
# bounds. The three JAX tests on 2 cores (Intel Xeon family 6 model 207, AVX-512, December 2026), alternated: 54.6
# and 58.8 s at level 2, 48.0 and 48.4 s at level 1; the test that builds and trains ResNet-18 under JAX, 9.2-10.4 s
# against 11.5-16.4 s. Level 0 compiled faster still but ran the training test 2.7x slower (90 s). A value set is kept.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=1")


def pytest_configure(config):
    """Keras imported as every kres command imports it (``_compat.import_keras``), before the test files import it:
    without the scikit-learn, pyplot and JAX imports it makes optionally, which each test worker's collection made
    (about 2 s a worker on an AMD EPYC Zen 3, more where a fresh install has no bytecode yet). The tests that use
    them import them as usual. Not in the xdist controller, which runs no tests. Through the CLI's own function:
    pytest does not capture output yet, and TensorFlow's start-up lines would reach the terminal."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        from kres.main import _import_backend_quietly

        _import_backend_quietly()


DIGITS_EPOCHS = 4


@pytest.fixture(scope="session")
def trained_digits_run(tmp_path_factory):
    """A run directory (best.keras, meta.json, config.json) of ResNet-18 trained on the built-in digits at 32 px
    with the digits recipe (imagenet stem), once per test session. For tests whose bounds need a model that has
    learned something. Under pytest-xdist the workers share one training: the first trains under a lock, the others
    wait for it and reuse its run. At one thread a pool (AMD EPYC Zen 3, December 2026): 4 epochs, 53 s, best
    96.7%, int8 agreeing with it on 99.7% of the 359 validation digits; 6 epochs took 75 s for 98.1% and the same
    99.7%."""
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder for all the workers
    run, done = shared / "digits" / "run", shared / "digits" / "best_val_accuracy"
    run.parent.mkdir(exist_ok=True)
    with open(shared / "digits.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = train(TrainConfig(depth=18, epochs=DIGITS_EPOCHS, output=str(run), seed=0), DataConfig(),
                           stream=io.StringIO())
            done.write_text(str(result.best_val_accuracy))
    best = float(done.read_text())
    assert best >= 0.9, best
    return run


# The slowest files first, as `pytest --durations` measured them on 2 cores (seconds a file, December 2026):
# runs_safety 210, export 117, qat 117, train_processes 115, model 92, train 55, bench_tflite 48, quantize 48.
# With `--dist loadfile --no-loadscope-reorder` xdist hands the files out in collection order, the next one to a
# worker with two tests or fewer left, so the long files start early and the two workers finish within a short
# file of each other; by default it orders them by their number of tests, which left one worker 40 s of long tests
# alone at the end.
SLOWEST_FILES = ["test_runs_safety.py", "test_export.py", "test_qat.py", "test_train_processes.py", "test_model.py",
                 "test_train.py", "test_bench_tflite.py", "test_quantize.py"]


def pytest_collection_finish(session):
    """Everything the collection imported (TensorFlow and Keras alone: about 430,000 objects) lives to the end of
    the session: moved out of the garbage collector's way, a full collection no longer walks it each time (0.25-0.3
    s each on 2 CPU cores, 13.5 s of test_runs_safety's after-test collections; 5.8 s once frozen, December 2026)."""
    gc.collect()
    gc.freeze()
    if "keras" in sys.modules:  # in-process saves and loads cached as every kres command's (a speed-up only)
        from keras_resnet import _compat

        _compat.cache_saving_skipsets()


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order
