"""Callbacks shared by the training scripts: checkpoints, resume, logs, AVA frame-mAP.

`standard_callbacks(model_dir)` is what the example scripts pass to `model.fit`: the
learning rate in the epoch logs, automatic resume (`backup/`), weights per epoch
(`checkpoints/`), TensorBoard (`logs/`) and a CSV history (`history.csv`).

The backup and the per-epoch weights are written atomically (a temporary file renamed onto
the final name), so a process killed at any moment, even while saving, leaves only complete
files under their final names.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from keras_slowfast.atomic import atomic_path, save_weights_atomically, write_text_atomically

__all__ = [
    "AtomicBackupAndRestore",
    "AtomicModelCheckpoint",
    "AvaFrameMAP",
    "LearningRateLogger",
    "resume_epoch",
    "save_weights_atomically",
    "standard_callbacks",
]

_BACKUP_WEIGHTS = "latest.weights.h5"
_BACKUP_METADATA = "training_metadata.json"
# Inside the backup's weights file: the training position and the random-seed states.
_STATE_GROUP = "backup_state"


def _seed_state_variables(model):
    """The model's variables that are not weights: the states of its random seed generators."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _read_backup_metadata(weights_path):
    import h5py

    with h5py.File(weights_path, "r") as f:
        group = f.get(_STATE_GROUP)
        if group is None or "metadata" not in group.attrs:
            return None
        return json.loads(group.attrs["metadata"])


def resume_epoch(backup_dir: str | os.PathLike) -> int:
    """The epoch (0-based) at which `model.fit` resumes from the backup in `backup_dir`.

    It is 0 when there is no backup. Use it to start an input pipeline that depends on the
    epoch (a seeded per-epoch shuffle) where the resumed run starts, so that a resumed run
    sees the same batches as an uninterrupted one.

    Args:
        backup_dir: the folder of an `AtomicBackupAndRestore` (`model_dir/backup` with
            `standard_callbacks`).

    Returns:
        An int.

    Example:
        >>> import tempfile
        >>> resume_epoch(tempfile.mkdtemp())
        0
    """
    path = os.path.join(os.fspath(backup_dir), _BACKUP_WEIGHTS)
    if os.path.exists(path):
        metadata = _read_backup_metadata(path)
        if metadata is not None:
            return int(metadata["epoch"])
    meta_path = os.path.join(os.fspath(backup_dir), _BACKUP_METADATA)
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    return 0


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that survives being killed at any moment.

    Keras' callback writes `latest.weights.h5` in place and then `training_metadata.json`:
    a kill during the first write leaves a truncated file, a kill between the two pairs new
    weights with the previous epoch number (the resumed run then repeats an epoch), and the
    states of the random seed generators (dropout masks) are not saved, so a resumed run
    draws other masks than an uninterrupted one. This callback instead writes one file
    atomically (temporary file, then `os.replace`) holding the weights, the optimizer
    state, the seed-generator states and the epoch, and restores all of them;
    `training_metadata.json` is still written (atomically, after the weights) for readers.

    A rerun resumes at the start of the epoch after the last one finished: the steps of an
    interrupted epoch are redone. Saving every N steps is not offered, because `model.fit`
    cannot start in the middle of an epoch (Keras would replay the epoch's first steps on
    weights that already took them). With op determinism, seeded initialisation and an
    input pipeline that yields the same batches for an epoch whether or not the run was
    resumed (see `resume_epoch`), a run killed and resumed any number of times ends with
    the same weights as an uninterrupted one.

    Args:
        backup_dir: folder of the backup (used by this callback only).
        delete_checkpoint: delete the backup when training finishes.

    Example:
        >>> callback = AtomicBackupAndRestore("runs/demo/backup", delete_checkpoint=False)
    """

    def __init__(self, backup_dir: str | os.PathLike, delete_checkpoint: bool = True) -> None:
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self.backup_dir = os.fspath(backup_dir)
        self._weights_path = os.path.join(self.backup_dir, _BACKUP_WEIGHTS)
        self._training_metadata_path = os.path.join(self.backup_dir, _BACKUP_METADATA)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Temporary files of a save that was killed: never renamed, never to be read.
        for pattern in (f".{_BACKUP_WEIGHTS}.*.tmp*", f".{_BACKUP_METADATA}.*.tmp*"):
            for path in glob.glob(os.path.join(glob.escape(self.backup_dir), pattern)):
                os.remove(path)
        self._load_model()

    def _load_model(self):
        if not self.model.built:
            raise ValueError(
                "To use `AtomicBackupAndRestore`, build the model before calling `fit()`. "
                f"Received: model={self.model.name!r} (not built)"
            )
        if not os.path.exists(self._weights_path):
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self._weights_path)
        import h5py

        with h5py.File(self._weights_path, "r") as f:
            group = f.get(_STATE_GROUP)
            if group is None:  # a backup written by keras.callbacks.BackupAndRestore
                metadata = None
            else:
                metadata = json.loads(group.attrs["metadata"])
                seeds = group.get("seed_generators")
                for variable in _seed_state_variables(self.model):
                    if seeds is not None and variable.path in seeds:
                        variable.assign(np.asarray(seeds[variable.path]))
        if metadata is None and os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path, encoding="utf-8") as f:
                metadata = json.load(f)
        if metadata is not None:
            self.model._initial_epoch = int(metadata["epoch"])

    def _save_model(self):
        import h5py

        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        if self.model.optimizer is not None:
            iterations = self.model.optimizer.iterations
            metadata["iterations"] = int(keras.ops.convert_to_numpy(iterations))
        with atomic_path(self._weights_path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
            with h5py.File(tmp, "a") as f:
                group = f.create_group(_STATE_GROUP)
                group.attrs["metadata"] = json.dumps(metadata)
                seeds = group.create_group("seed_generators")
                for variable in _seed_state_variables(self.model):
                    seeds.create_dataset(
                        variable.path, data=keras.ops.convert_to_numpy(variable.value)
                    )
        write_text_atomically(self._training_metadata_path, json.dumps(metadata))


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` writing through a temporary file (`os.replace`).

    A kill while saving leaves the previous files intact and no truncated file under a
    checkpoint name; the temporary files of such a save are removed when training starts
    again. Arguments are those of `keras.callbacks.ModelCheckpoint`.

    Example:
        >>> callback = AtomicModelCheckpoint(
        ...     "runs/demo/checkpoints/epoch_{epoch:03d}.weights.h5", save_weights_only=True)
    """

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        folder, name = os.path.split(os.fspath(self.filepath))
        if "{" in folder:
            return
        stem = glob.escape(re.sub(r"\{[^}]*\}", "\x00", name)).replace("\x00", "*")
        for path in glob.glob(os.path.join(glob.escape(folder or "."), f".{stem}.*.tmp*")):
            os.remove(path)

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IsADirectoryError(
                f"`filepath` names an existing folder; give a file name. Received: "
                f"filepath={filepath!r}"
            )
        if self.save_weights_only:
            save_weights_atomically(self.model, filepath)
        else:
            suffix = ".keras" if filepath.endswith(".keras") else os.path.splitext(filepath)[1]
            with atomic_path(filepath, suffix=suffix) as tmp:
                self.model.save(tmp, overwrite=True)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saved the model to {filepath}", flush=True)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate of the next step to the epoch logs (`learning_rate`).

    Example:
        >>> callback = LearningRateLogger()
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)


def standard_callbacks(
    model_dir: str | os.PathLike, extra: Iterable[keras.callbacks.Callback] = ()
) -> list[keras.callbacks.Callback]:
    """The callbacks of the training scripts, writing into `model_dir`.

    In order: `LearningRateLogger`, the `extra` callbacks (so that metrics they add to the
    epoch logs are written too), `AtomicModelCheckpoint` of the weights after every epoch
    (`model_dir/checkpoints/epoch_NNN.weights.h5`), `AtomicBackupAndRestore` into
    `model_dir/backup` (rerunning the same command resumes after the last finished epoch;
    see `resume_epoch` for the input pipeline), `TensorBoard`
    (`model_dir/logs`) and `CSVLogger` (`model_dir/history.csv`, appended on resume).

    Args:
        model_dir: the run's folder.
        extra: callbacks that add entries to the epoch logs (e.g. `AvaFrameMAP`).

    Returns:
        A list of callbacks.

    Example:
        >>> [type(c).__name__ for c in standard_callbacks("runs/demo")]  # doctest: +ELLIPSIS
        ['LearningRateLogger', 'AtomicModelCheckpoint', 'AtomicBackupAndRestore', ...]
    """
    d = os.fspath(model_dir)
    return [
        LearningRateLogger(),
        *extra,
        # The epoch's weights before the backup: a run killed between the two saves redoes
        # the epoch and writes its weights again, so no epoch's file is ever missing.
        AtomicModelCheckpoint(
            os.path.join(d, "checkpoints", "epoch_{epoch:03d}.weights.h5"), save_weights_only=True
        ),
        AtomicBackupAndRestore(os.path.join(d, "backup"), delete_checkpoint=False),
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

    def __init__(
        self,
        data_dir: str | os.PathLike,
        every_n_epochs: int = 1,
        output_dir: str | os.PathLike | None = None,
        **evaluate_kwargs: Any,
    ) -> None:
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

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._epochs = self.params.get("epochs")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
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
