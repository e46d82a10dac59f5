"""A custom training loop for any `tf.distribute` strategy, multi-worker included.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` (keras#20585). This loop
runs the same model, optimizer and schedule with `strategy.run`, writes `tf.train`
checkpoints (the chief into `model_dir/checkpoints`, other workers into temporary
directories, as TensorFlow requires every worker to save), TensorBoard summaries from the
chief, and resumes from the latest checkpoint.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import tensorflow as tf

from keras_slowfast._checks import check_positive_int
from keras_slowfast.training.strategy import is_chief

__all__ = ["DistributedTrainer", "kinetics_input_fn", "tfrecord_input_fn"]


def kinetics_input_fn(
    list_file: str | os.PathLike | Iterable[tuple[str | os.PathLike, int | str]],
    global_batch_size: int,
    seed: int | None = None,
    **kwargs: Any,
) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """A `dataset_fn` for `DistributedTrainer` that shards a video list across workers.

    Every input pipeline (one per worker) reads a disjoint slice of the list
    (`entries[pipeline_id::num_pipelines]`, repeated if shorter than a batch), repeats it,
    and batches clips `global_batch_size // num_replicas` at a time, so that no worker
    decodes videos it does not train on.

    Args:
        list_file: PySlowFast list file or `(path, label)` pairs.
        global_batch_size: clips per step over all replicas (divisible by their number).
        seed: base seed; pipeline `i` uses `seed + i` (None: random).
        **kwargs: other `keras_slowfast.data.kinetics_dataset` arguments (`mode`,
            `num_frames`, `sampling_rate`, `crop_size`, `path_prefix`, ...).

    Returns:
        A function `input_context -> tf.data.Dataset` for
        `strategy.distribute_datasets_from_function`.

    Example:
        >>> fn = kinetics_input_fn("train.csv", 64, num_frames=32, sampling_rate=2)
        ... # doctest: +SKIP
        >>> trainer.fit(fn, epochs=196, steps_per_epoch=3750)  # doctest: +SKIP
    """
    from keras_slowfast.data import kinetics_dataset, read_video_list

    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int):
        raise TypeError(
            f"`global_batch_size` must be an int. Received: global_batch_size={global_batch_size!r}"
        )
    if "batch_size" in kwargs:
        raise ValueError(
            "Give `global_batch_size`; the per-replica batch is derived from it. "
            f"Received: batch_size={kwargs['batch_size']!r}"
        )
    paths, labels = read_video_list(list_file, kwargs.pop("path_prefix", ""))
    entries = list(zip(paths, labels))

    def dataset_fn(input_context):
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        shard = entries[i::n]
        if not shard:
            raise ValueError(
                f"The video list has fewer entries ({len(entries)}) than input pipelines ({n}). "
                f"Received: list_file={list_file!r}"
            )
        per_replica = input_context.get_per_replica_batch_size(global_batch_size)
        if len(shard) < per_replica:
            # Training drops partial batches: make sure a pass yields at least one.
            shard = shard * math.ceil(per_replica / len(shard))
        ds = kinetics_dataset(
            shard,
            batch_size=per_replica,
            seed=None if seed is None else seed + i,
            **kwargs,
        )
        return ds.repeat()

    return dataset_fn


def tfrecord_input_fn(
    file_pattern: str | os.PathLike | Sequence[str | os.PathLike],
    global_batch_size: int,
    seed: int | None = None,
    *,
    data_service_address: str | None = None,
    processing_mode: str = "distributed_epoch",
    job_name: str | None = None,
    **kwargs: Any,
) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """A `dataset_fn` for `DistributedTrainer` over JPEG-frame TFRecords, local or remote.

    Locally (`data_service_address=None`), pipeline `i` of `n` reads files `i::n` of the
    sorted matches of `file_pattern` (give at least as many files as workers), repeats
    them, and batches `global_batch_size // num_replicas` clips.

    With `data_service_address`, the whole pipeline (reading, parsing, JPEG decoding, frame
    sampling, augmentation, per-replica batching, repetition) runs on `tf.data` service
    workers (see `keras_slowfast.training.data_service`). Every input pipeline then builds
    the same dataset over all files with the same `seed` and joins the same job
    (`job_name`): the service, not the trainer, splits the data, so there is no
    per-pipeline file sharding (and no `tf.distribute` auto-sharding). In
    `"distributed_epoch"` mode the files are handed to the workers on demand, so every
    clip is produced once per pass over the files, across all workers and trainers.

    Args:
        file_pattern: glob pattern, path, or list of them (JPEG-frame TFRecords written by
            `keras_slowfast.data.write_frame_tfrecords`). With the data service, the paths
            are opened by the service workers (use storage they read).
        global_batch_size: clips per step over all replicas.
        seed: base seed; locally pipeline `i` uses `seed + i`, with the data service all
            use `seed` (None: random).
        data_service_address: `"grpc://host:port"` of a `tf.data` service dispatcher
            (None: run the pipeline in this process).
        processing_mode: `"distributed_epoch"` or `"parallel_epochs"` (data service only).
        job_name: the job shared by all trainers of one run (data service only; default
            `"keras_slowfast_train"`; runs sharing a dispatcher need distinct names).
        **kwargs: other `keras_slowfast.data.frame_tfrecord_dataset` arguments.

    Returns:
        A function `input_context -> tf.data.Dataset`.

    Example:
        >>> fn = tfrecord_input_fn("k400/train-*", 64, num_frames=32, sampling_rate=2)
        ... # doctest: +SKIP
        >>> fn = tfrecord_input_fn("gs://bucket/k400/train-*", 64,
        ...                        data_service_address="grpc://dispatcher:5050",
        ...                        job_name="k400_run1")  # doctest: +SKIP
    """
    from keras_slowfast.data import frame_tfrecord_dataset
    from keras_slowfast.training import data_service

    if "batch_size" in kwargs:
        raise ValueError(
            "Give `global_batch_size`; the per-replica batch is derived from it. "
            f"Received: batch_size={kwargs['batch_size']!r}"
        )
    if data_service_address is not None:
        data_service.parse_service_address(data_service_address, "data_service_address")
        data_service.check_processing_mode(processing_mode)
        if job_name is None:
            job_name = "keras_slowfast_train"
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else file_pattern
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(os.fspath(p))})
    if not files:
        raise ValueError(f"No file matches. Received: file_pattern={file_pattern!r}")

    def dataset_fn(input_context):
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
        if data_service_address is not None:
            # One dataset for all pipelines: identical graphs share one registered dataset
            # and one job; the service splits the files among its workers.
            ds = frame_tfrecord_dataset(files, batch_size=batch_size, seed=seed, **kwargs)
            return data_service.distribute_dataset(
                ds.repeat(), data_service_address, processing_mode, job_name
            )
        if len(files) < n:
            raise ValueError(
                f"Give at least one TFRecord file per worker ({n}); {len(files)} match. "
                f"Received: file_pattern={file_pattern!r}"
            )
        ds = frame_tfrecord_dataset(
            files[i::n],
            batch_size=batch_size,
            seed=None if seed is None else seed + i,
            **kwargs,
        )
        return ds.repeat()

    return dataset_fn


def _split(element):
    if isinstance(element, dict):
        raise TypeError(
            "Dataset elements must be `(inputs, labels, ...)` tuples. Received: a dict element"
        )
    return element[0], element[1]


class DistributedTrainer:
    """Trains a Keras model with a custom loop under any distribution strategy.

    Build the model and the optimizer inside `strategy.scope()`, then call `fit`. Under
    `MultiWorkerMirroredStrategy` every worker runs the same program (configured by
    `TF_CONFIG`); gradients are all-reduced, so all workers hold the same weights. The
    learning-rate schedule is driven by `optimizer.iterations`, which is checkpointed, so a
    resumed run continues the schedule where it stopped.

    Layout of `model_dir`: `checkpoints/` (`tf.train.CheckpointManager`, chief only),
    `train/` (TensorBoard events, chief only).

    Args:
        model: a Keras model created under `strategy.scope()`.
        optimizer: a Keras optimizer created under `strategy.scope()` (wrapped in a
            `LossScaleOptimizer` automatically under the `mixed_float16` policy).
        model_dir: directory for checkpoints and summaries. Every worker restores from
            `model_dir/checkpoints`, so for resuming it must be storage all workers read
            (a shared file system, GCS, ...).
        strategy: the strategy; default: the current one.
        loss: a function `(labels, predictions) -> per-example losses`, or the name of a
            Keras loss function; default sparse categorical cross-entropy on probabilities.
        checkpoint_every_n_steps: also save every this many steps (default: each epoch).
        max_to_keep: checkpoints kept.
        log_every_n_steps: TensorBoard scalar period.

    Example:
        >>> strategy = get_strategy("multi_worker")  # doctest: +SKIP
        >>> with strategy.scope():  # doctest: +SKIP
        ...     model = keras_slowfast.SlowFastR50(classes=400)
        ...     optimizer = create_optimizer(model, epochs=196, steps_per_epoch=3750,
        ...                                  global_batch_size=64)
        >>> trainer = DistributedTrainer(model, optimizer, "runs/k400", strategy)
        ... # doctest: +SKIP
        >>> trainer.fit(kinetics_input_fn("train.csv", 64), 196, 3750)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        model_dir: str | os.PathLike,
        strategy: tf.distribute.Strategy | None = None,
        loss: str | Callable[[tf.Tensor, tf.Tensor], tf.Tensor] = "sparse_categorical_crossentropy",
        checkpoint_every_n_steps: int | None = None,
        max_to_keep: int = 3,
        log_every_n_steps: int = 10,
    ) -> None:
        self.strategy = strategy or tf.distribute.get_strategy()
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"`model` must be a keras.Model. Received: model={type(model).__name__}"
            )
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "`optimizer` must be a keras optimizer. "
                f"Received: optimizer={type(optimizer).__name__}"
            )
        if model.weights and not self.strategy.extended.variable_created_in_scope(
            model.weights[0].value
        ):
            raise ValueError(
                "The model's variables were not created under `strategy.scope()`. Build the "
                f"model and the optimizer inside it. Received: model={model.name!r}"
            )
        for name, value in (
            ("checkpoint_every_n_steps", checkpoint_every_n_steps),
            ("log_every_n_steps", log_every_n_steps),
            ("max_to_keep", max_to_keep),
        ):
            check_positive_int(name, value, allow_none=True)
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss) and loss.reduction is not None:
            raise ValueError(
                "`loss` must return per-example losses: give a loss function or a Loss with "
                f"reduction=None. Received: loss={loss.name!r} with reduction={loss.reduction!r}"
            )
        if not callable(loss):
            raise TypeError(f"`loss` must be callable or a loss name. Received: loss={loss!r}")
        self.model = model
        self.loss = loss
        self.model_dir = os.fspath(model_dir)
        self.checkpoint_every_n_steps = checkpoint_every_n_steps
        self.log_every_n_steps = log_every_n_steps
        self.is_chief = is_chief(self.strategy)
        with self.strategy.scope():
            if keras.mixed_precision.global_policy().name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer
            ):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            # Optimizer variables must exist before a checkpoint can restore into them.
            self.optimizer.build(model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer)
        self.checkpoint_dir = os.path.join(self.model_dir, "checkpoints")
        self._write_dir = self.checkpoint_dir if self.is_chief else self._worker_temp_dir()
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._write_dir, max_to_keep=max_to_keep if self.is_chief else 1
        )
        if self.is_chief:
            self.writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
        else:
            self.writer = tf.summary.create_noop_writer()
        self._train_step = None

    def _worker_temp_dir(self):
        resolver = self.strategy.cluster_resolver
        return os.path.join(
            self.model_dir, "worker_tmp", f"{resolver.task_type}_{resolver.task_id}"
        )

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far (restored with the checkpoint)."""
        return int(self.optimizer.iterations.numpy())

    def restore(self) -> str | None:
        """Restores the latest checkpoint of `model_dir/checkpoints`, if any.

        Returns:
            The path restored, or None.
        """
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest is not None:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest

    def save(self) -> str:
        """Saves a checkpoint (every worker must call it; only the chief's is kept).

        Returns:
            The chief's checkpoint path (on other workers, their temporary path).
        """
        path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        if not self.is_chief:
            shutil.rmtree(self._write_dir, ignore_errors=True)
        return path

    def _make_train_step(self):
        model, optimizer, loss_fn, strategy = self.model, self.optimizer, self.loss, self.strategy
        scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                predictions = model(x, training=True)
                per_example = tf.cast(loss_fn(y, predictions), tf.float32)
                loss = tf.nn.compute_average_loss(per_example)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(
                        tf.add_n([tf.cast(v, tf.float32) for v in model.losses])
                    )
                scaled = optimizer.scale_loss(loss) if scale_loss else loss
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(grads, variables))
            if predictions.shape.rank == 2 and y.shape.rank == 1:
                hits = tf.cast(
                    tf.equal(
                        tf.argmax(predictions, -1, output_type=tf.int64), tf.cast(y, tf.int64)
                    ),
                    tf.float32,
                )
            else:
                hits = tf.zeros([tf.shape(per_example)[0]])
            return loss, tf.reduce_sum(hits), tf.cast(tf.size(hits), tf.float32)

        @tf.function
        def train_step(iterator):
            x, y = _split(next(iterator))
            loss, hits, count = strategy.run(replica_step, args=(x, y))
            reduce = strategy.reduce
            total = tf.distribute.ReduceOp.SUM
            return reduce(total, loss, None), reduce(total, hits, None), reduce(total, count, None)

        return train_step

    def _distribute(self, dataset):
        if isinstance(dataset, tf.distribute.DistributedDataset):
            return dataset
        if isinstance(dataset, tf.data.Dataset):
            return self.strategy.experimental_distribute_dataset(dataset.repeat())
        if callable(dataset):
            return self.strategy.distribute_datasets_from_function(dataset)
        raise TypeError(
            "`dataset` must be a tf.data.Dataset of global batches, a function "
            f"input_context -> per-replica dataset, or a DistributedDataset. Received: "
            f"dataset={type(dataset).__name__}"
        )

    def _current_lr(self):
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def fit(
        self,
        dataset: tf.data.Dataset
        | Callable[[tf.distribute.InputContext], tf.data.Dataset]
        | tf.distribute.DistributedDataset,
        epochs: int,
        steps_per_epoch: int,
        resume: bool = True,
        verbose: int = 1,
    ) -> dict[str, list[float]]:
        """Trains until `epochs * steps_per_epoch` optimizer steps have been taken.

        Args:
            dataset: a `tf.data.Dataset` of global batches `(inputs, labels, ...)` (it is
                repeated and distributed), a function `input_context -> tf.data.Dataset` of
                per-replica batches that repeats (see `kinetics_input_fn`), or a
                `DistributedDataset` that does not run out.
            epochs: total epochs (counting those of a resumed run).
            steps_per_epoch: optimizer steps per epoch.
            resume: restore the latest checkpoint of `model_dir` first.
            verbose: print one line per epoch (chief only).

        Returns:
            A dict with per-epoch lists `"epoch"`, `"loss"`, `"accuracy"` and
            `"learning_rate"` (the epochs run by this call).
        """
        epochs = check_positive_int("epochs", epochs)
        steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        if resume:
            self.restore()
        if self._train_step is None:
            self._train_step = self._make_train_step()
        iterator = iter(self._distribute(dataset))
        history = {"epoch": [], "loss": [], "accuracy": [], "learning_rate": []}
        total_steps = epochs * steps_per_epoch
        step = self.global_step
        while step < total_steps:
            epoch = step // steps_per_epoch
            epoch_end = min((epoch + 1) * steps_per_epoch, total_steps)
            losses, hits, count = [], 0.0, 0.0
            start = time.time()
            while step < epoch_end:
                lr = self._current_lr()
                loss, h, c = self._train_step(iterator)
                step += 1
                loss = float(loss)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"The loss became {loss} at step {step}.")
                losses.append(loss)
                hits += float(h)
                count += float(c)
                if step % self.log_every_n_steps == 0:
                    with self.writer.as_default(step=step):
                        tf.summary.scalar("loss", loss)
                        tf.summary.scalar("learning_rate", lr)
                if self.checkpoint_every_n_steps and step % self.checkpoint_every_n_steps == 0:
                    self.save()
            self.save()
            mean_loss = sum(losses) / len(losses)
            accuracy = hits / count if count else float("nan")
            with self.writer.as_default(step=step):
                tf.summary.scalar("epoch_loss", mean_loss)
                tf.summary.scalar("epoch_accuracy", accuracy)
            self.writer.flush()
            history["epoch"].append(epoch)
            history["loss"].append(mean_loss)
            history["accuracy"].append(accuracy)
            history["learning_rate"].append(self._current_lr())
            if verbose and self.is_chief:
                print(
                    f"Epoch {epoch + 1}/{epochs} - step {step} - loss {mean_loss:.4f} - "
                    f"accuracy {accuracy:.4f} - lr {self._current_lr():.6g} - "
                    f"{time.time() - start:.1f}s",
                    flush=True,
                )
        return history
