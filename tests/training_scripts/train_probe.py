"""Runs `examples/train.py` unchanged, with probes for the tests (one TensorFlow thread).

Usage: `python train_probe.py --probe_dir DIR [train.py flags]`. With `--probe_dir`, the
process writes there, named by its task (`worker0`, `worker1`, or `single`):

* `initial_<task>.weights.h5`: the weights of the model as `train.py` built it (after
  `--init_weights`), before any step;
* `batch_<task>.npz`: the first batch its input pipeline yields (`x`, `y`), which is the
  batch of its replica at step 1 (custom loop); `precise_bn_batch_<task>.npz`: the first
  batch of the pipeline made for precise BN;
* `trained_<task>.weights.h5`: the weights before precise BN (when it runs);
* `final_<task>.weights.h5`: the weights when `train.py`'s `main` returns;

and prints `STEP <global step> <loss>` after every training step of the custom loop (the
loss as the loop returns and logs it, `repr` of the float32 value). The loop also logs
the loss to TensorBoard at every step. Without `--probe_dir` it only prints the steps.
Nothing here changes what `train.py` computes.
"""

import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)

from absl import app, flags  # noqa: E402

from keras_slowfast import training  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("train", REPO / "examples" / "train.py")
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)

flags.DEFINE_string("probe_dir", None, "Folder for the probe files (see the module docstring).")
FLAGS = flags.FLAGS
_STATE = {}


def _task():
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task")
    return f"{task['type']}{task['index']}" if task else "single"


def _probe_path(name):
    suffix = ".npz" if name.endswith("batch") else ".weights.h5"
    return Path(FLAGS.probe_dir) / f"{name}_{_task()}{suffix}"


_build_model = train.build_model


def build_model(num_frames):
    model = _build_model(num_frames)
    _STATE["model"] = model
    if FLAGS.probe_dir:
        model.save_weights(str(_probe_path("initial")))
    return model


_input_fn = train._input_fn
# The datasets the input function makes, in order: training, then precise BN.
_BATCH_NAMES = ["batch", "precise_bn_batch"]


def input_fn(*args, **kwargs):
    dataset_fn = _input_fn(*args, **kwargs)

    def probed(input_context):
        ds = dataset_fn(input_context)
        calls = _STATE.setdefault("input_calls", 0)
        _STATE["input_calls"] = calls + 1
        if not FLAGS.probe_dir or calls >= len(_BATCH_NAMES):
            return ds
        # The first batch is taken here and handed on as the dataset's first element.
        first = next(iter(ds))
        x, y = first[0], first[1]
        np.savez(_probe_path(_BATCH_NAMES[calls]), x=x.numpy(), y=y.numpy())
        return tf.data.Dataset.from_tensors(first).concatenate(ds.skip(1))

    return probed


_update_bn_stats = training.update_bn_stats


def update_bn_stats(model, *args, **kwargs):
    if FLAGS.probe_dir:
        model.save_weights(str(_probe_path("trained")))
    return _update_bn_stats(model, *args, **kwargs)


class ProbedTrainer(training.DistributedTrainer):
    """The library's trainer, logging every step and printing its loss."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("log_every_n_steps", 1)
        super().__init__(*args, **kwargs)

    def _make_train_step(self):
        step = super()._make_train_step()

        def probed(iterator):
            out = step(iterator)
            print(f"STEP {self.global_step} {float(out[0])!r}", flush=True)
            return out

        return probed


train.build_model = build_model
train._input_fn = input_fn
training.DistributedTrainer = ProbedTrainer
training.update_bn_stats = update_bn_stats


def main(argv):
    train.main(argv)
    if FLAGS.probe_dir:
        _STATE["model"].save_weights(str(_probe_path("final")))
    print("PROBE DONE", flush=True)


if __name__ == "__main__":
    app.run(main)
