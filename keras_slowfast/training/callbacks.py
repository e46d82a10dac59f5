"""Callbacks shared by the training scripts: checkpoints, resume, logs, AVA frame-mAP.

`standard_callbacks(model_dir)` is what the example scripts pass to `model.fit`: the
learning rate in the epoch logs, automatic resume (`backup/`), weights per epoch
(`checkpoints/`), TensorBoard (`logs/`) and a CSV history (`history.csv`).
"""

import math
import os

import keras

from keras_slowfast.atomic import save_weights_atomically

__all__ = [
    "AvaFrameMAP",
    "LearningRateLogger",
    "save_weights_atomically",
    "standard_callbacks",
]


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate of the next step to the epoch logs (`learning_rate`).

    Example:
        >>> callback = LearningRateLogger()
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)


def standard_callbacks(model_dir, extra=()):
    """The callbacks of the training scripts, writing into `model_dir`.

    In order: `LearningRateLogger`, the `extra` callbacks (so that metrics they add to the
    epoch logs are written too), `BackupAndRestore` into `model_dir/backup` (rerunning the
    same command resumes after the last finished epoch), `ModelCheckpoint` of the weights
    after every epoch (`model_dir/checkpoints/epoch_NNN.weights.h5`), `TensorBoard`
    (`model_dir/logs`) and `CSVLogger` (`model_dir/history.csv`, appended on resume).

    Args:
        model_dir: the run's folder.
        extra: callbacks that add entries to the epoch logs (e.g. `AvaFrameMAP`).

    Returns:
        A list of callbacks.

    Example:
        >>> [type(c).__name__ for c in standard_callbacks("runs/demo")]  # doctest: +ELLIPSIS
        ['LearningRateLogger', 'BackupAndRestore', 'ModelCheckpoint', 'TensorBoard', ...]
    """
    d = os.fspath(model_dir)
    return [
        LearningRateLogger(),
        *extra,
        keras.callbacks.BackupAndRestore(os.path.join(d, "backup"), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            os.path.join(d, "checkpoints", "epoch_{epoch:03d}.weights.h5"), save_weights_only=True
        ),
        keras.callbacks.TensorBoard(
            os.path.join(d, "logs"), update_freq="epoch", write_graph=False, profile_batch=0
        ),
        keras.callbacks.CSVLogger(os.path.join(d, "history.csv"), append=True),
    ]


class AvaFrameMAP(keras.callbacks.Callback):
    """Scores the detector on an AVA split every few epochs and logs `val_mAP`.

    It runs :func:`keras_slowfast.evaluation.evaluate_ava_detector` (PySlowFast's AVA test
    loop and evaluator) at the end of every `every_n_epochs`-th epoch and of the last one,
    adds the frame-mAP at IoU 0.5 to the epoch logs as `val_mAP` (NaN in the other epochs'
    logs) and, with `output_dir`,
    writes that evaluation's `detections.csv` and `metrics.json` into
    `output_dir/epoch_NNN/`.

    Args:
        data_dir: the AVA-layout dataset folder.
        every_n_epochs: evaluation period.
        output_dir: where to keep each evaluation's files (optional).
        **evaluate_kwargs: other `evaluate_ava_detector` arguments (`mode`, `num_frames`,
            `sampling_rate`, `test_crop_size`, `full_test_on_val`, `batch_size`, ...).

    Example:
        >>> callback = AvaFrameMAP("ava", every_n_epochs=5, mode="val")  # doctest: +SKIP
    """

    def __init__(self, data_dir, every_n_epochs=1, output_dir=None, **evaluate_kwargs):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise TypeError(
                f"`every_n_epochs` must be an int. Received: every_n_epochs={every_n_epochs!r}"
            )
        if every_n_epochs < 1:
            raise ValueError(
                f"`every_n_epochs` must be >= 1. Received: every_n_epochs={every_n_epochs!r}"
            )
        self.data_dir = data_dir
        self.every_n_epochs = every_n_epochs
        self.output_dir = output_dir
        evaluate_kwargs.setdefault("progress", False)
        self.evaluate_kwargs = evaluate_kwargs
        self._epochs = None

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        last = self._epochs is not None and epoch + 1 == self._epochs
        if (epoch + 1) % self.every_n_epochs and not last:
            # Present in every epoch's logs, so that a CSV log has the column from the start.
            if logs is not None:
                logs["val_mAP"] = math.nan
            return
        from keras_slowfast.evaluation import evaluate_ava_detector

        out = None
        if self.output_dir is not None:
            out = os.path.join(os.fspath(self.output_dir), f"epoch_{epoch + 1:03d}")
        result = evaluate_ava_detector(
            self.model, self.data_dir, output_dir=out, **self.evaluate_kwargs
        )
        value = result.mean_ap
        if logs is not None:
            logs["val_mAP"] = float(value)
        shown = "nan" if math.isnan(value) else f"{value:.4f}"
        print(f"Epoch {epoch + 1}: AVA frame-mAP@0.5 {shown}", flush=True)
