"""Run input pipelines on `tf.data` service workers (TensorFlow's disaggregated input).

A *dispatcher* hands out work; *workers* (CPU machines) run the whole input pipeline
(TFRecord reading, parsing, JPEG decoding, frame sampling, augmentation, batching) and
stream finished batches to the trainers (the *consumers*). Only pipelines made of
TensorFlow ops can be shipped: the dataset graph is serialised and rebuilt on the workers,
so `tf.py_function` / `tf.numpy_function` stages (the PyAV video-list pipeline,
`keras_slowfast.data.kinetics_dataset`) cannot run there. The JPEG-frame TFRecord pipeline
(`keras_slowfast.data.frame_tfrecord_dataset`) is TensorFlow ops only and can.

Processing modes:

- `"distributed_epoch"` (the default; `tf.data.experimental.service.ShardingPolicy.DYNAMIC`):
  the dispatcher splits the source (the TFRecord file list) among the workers on demand,
  so in one epoch every training example is produced once over all workers and consumers
  together. This is the usual meaning of an epoch, and a slow worker simply takes fewer
  files.
- `"parallel_epochs"` (`ShardingPolicy.OFF`): every worker runs the whole dataset, so each
  example is produced once *per worker* per epoch (in its own random order).

Consumers that give the same `job_name` share one job: each element goes to one of them.
Under `MultiWorkerMirroredStrategy` every trainer therefore builds the *same* dataset (no
sharding of the file list by input pipeline, the same seed) with the same `job_name`; the
service does the splitting. A data-service dataset must not also be auto-sharded by
`tf.distribute` (that would drop elements): `distribute_dataset` turns auto-sharding off.

Example:
    >>> dispatcher = start_dispatcher()
    >>> worker = start_worker(dispatcher.address)
    >>> ds = distribute_dataset(tf.data.Dataset.range(5), dispatcher.target)
    >>> sorted(int(x) for x in ds)
    [0, 1, 2, 3, 4]
    >>> worker.stop(); dispatcher.stop()
"""

from __future__ import annotations

import re

import tensorflow as tf

__all__ = [
    "PROCESSING_MODES",
    "DataServiceServer",
    "distribute_dataset",
    "parse_service_address",
    "start_dispatcher",
    "start_worker",
]

_SERVICE = tf.data.experimental.service

#: Processing modes and the `tf.data` service sharding policy each one uses.
PROCESSING_MODES = {
    "distributed_epoch": _SERVICE.ShardingPolicy.DYNAMIC,
    "parallel_epochs": _SERVICE.ShardingPolicy.OFF,
}

_HOST = r"[A-Za-z0-9_.-]+|\[[0-9a-fA-F:.]+\]"
_ADDRESS = re.compile(
    rf"^(?:(?P<protocol>[a-z][a-z0-9+]*)://)?(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})$"
)


def parse_service_address(address: str, name: str = "service_address") -> tuple[str, str]:
    """Checks a dispatcher address and returns it as `(protocol, "host:port")`.

    Args:
        address: `"grpc://host:port"` or `"host:port"` (`grpc` is the only protocol).
        name: the argument name used in error messages.

    Returns:
        `("grpc", "host:port")`.

    Raises:
        ValueError: the address is not of that form or the port is out of range.

    Example:
        >>> parse_service_address("grpc://dispatcher.example:5050")
        ('grpc', 'dispatcher.example:5050')
        >>> parse_service_address("10.0.0.2:5050")
        ('grpc', '10.0.0.2:5050')
    """
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(
            f"`{name}` must be 'grpc://host:port' or 'host:port' with a port in [1, 65535]. "
            f"Received: {name}={address!r}"
        )
    protocol = match["protocol"] or "grpc"
    if protocol != "grpc":
        raise ValueError(
            f"`{name}` must use the grpc protocol ('grpc://host:port'). "
            f"Received: {name}={address!r}"
        )
    return protocol, f"{match['host']}:{match['port']}"


def check_processing_mode(processing_mode):
    """The `tf.data` service sharding policy of a `processing_mode` of `PROCESSING_MODES`.

    Raises:
        ValueError: naming `processing_mode` when it is not one of them.

    Example:
        >>> check_processing_mode("bogus")
        Traceback (most recent call last):
        ...
        ValueError: `processing_mode` must be one of [...]. Received: processing_mode='bogus'
    """
    if processing_mode not in PROCESSING_MODES:
        raise ValueError(
            f"`processing_mode` must be one of {sorted(PROCESSING_MODES)}. "
            f"Received: processing_mode={processing_mode!r}"
        )
    return PROCESSING_MODES[processing_mode]


def _check_port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(
            f"`port` must be an int in [0, 65535] (0: any free port). Received: port={port!r}"
        )


class DataServiceServer:
    """A started dispatcher or worker server and the address it listens on.

    Attributes:
        server: the `tf.data.experimental.service.DispatchServer` or `WorkerServer`.
        kind: `"dispatcher"` or `"worker"`.
        host: the host name it advertises.
        port: the bound port (the free port chosen when started with port 0).

    Example:
        >>> dispatcher = start_dispatcher()
        >>> dispatcher.target == "grpc://" + dispatcher.address
        True
        >>> dispatcher.stop()
    """

    def __init__(
        self,
        server: tf.data.experimental.service.DispatchServer
        | tf.data.experimental.service.WorkerServer,
        kind: str,
        host: str,
        port: int,
    ) -> None:
        self.server = server
        self.kind = kind
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        """`"host:port"`."""
        return f"{self.host}:{self.port}"

    @property
    def target(self) -> str:
        """`"grpc://host:port"`, the form `distribute_dataset` takes."""
        return f"grpc://{self.address}"

    def join(self) -> None:
        """Blocks until the server stops."""
        self.server.join()

    def stop(self) -> None:
        """Stops the server (idempotent)."""
        self.server.stop()

    def __repr__(self):
        return f"DataServiceServer(kind={self.kind!r}, address={self.address!r})"


def start_dispatcher(
    port: int = 0, work_dir: str | None = None, fault_tolerant: bool = False
) -> DataServiceServer:
    """Starts a `tf.data` service dispatcher in this process.

    Args:
        port: port to listen on (0: a free one, see `.port` of the result).
        work_dir: folder where the dispatcher journals its state (needed for
            `fault_tolerant`; use storage that survives the dispatcher's machine).
        fault_tolerant: journal state changes to `work_dir` so that a restarted
            dispatcher recovers its jobs.

    Returns:
        A `DataServiceServer` (its `.target` is the address to give the consumers and,
        without the `grpc://`, the workers).

    Example:
        >>> dispatcher = start_dispatcher()
        >>> dispatcher.kind, dispatcher.port > 0
        ('dispatcher', True)
        >>> dispatcher.stop()
    """
    _check_port(port)
    if fault_tolerant and not work_dir:
        raise ValueError(
            "`fault_tolerant=True` needs a `work_dir` for the dispatcher's journal. "
            f"Received: work_dir={work_dir!r}"
        )
    config = _SERVICE.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(fault_tolerant)
    )
    server = _SERVICE.DispatchServer(config)
    return DataServiceServer(server, "dispatcher", "localhost", server._server.bound_port())


def start_worker(
    dispatcher_address: str, port: int = 0, worker_address: str | None = None
) -> DataServiceServer:
    """Starts a `tf.data` service worker in this process and registers it.

    Args:
        dispatcher_address: the dispatcher, `"host:port"` or `"grpc://host:port"`.
        port: port to listen on (0: a free one).
        worker_address: host name or IP address the dispatcher tells consumers to reach
            this worker at (with the bound port); default `localhost`, fine on one machine
            only: on a cluster give the machine's name or IP address.

    Returns:
        A `DataServiceServer`.

    Example:
        >>> dispatcher = start_dispatcher()
        >>> worker = start_worker(dispatcher.target)
        >>> worker.kind
        'worker'
        >>> worker.stop(); dispatcher.stop()
    """
    _, address = parse_service_address(dispatcher_address, "dispatcher_address")
    _check_port(port)
    host = "localhost"
    if worker_address is not None:
        if not isinstance(worker_address, str) or not re.fullmatch(_HOST, worker_address):
            raise ValueError(
                "`worker_address` must be a host name or IP address (no port, no scheme). "
                f"Received: worker_address={worker_address!r}"
            )
        host = worker_address
    config = _SERVICE.WorkerConfig(
        dispatcher_address=address, worker_address=f"{host}:%port%", port=port
    )
    server = _SERVICE.WorkerServer(config)
    bound = server._server.bound_port()
    return DataServiceServer(server, "worker", host, bound)


def distribute_dataset(
    dataset: tf.data.Dataset,
    service_address: str,
    processing_mode: str = "distributed_epoch",
    job_name: str | None = None,
    *,
    max_outstanding_requests: int | None = None,
    compression: str | None = "AUTO",
) -> tf.data.Dataset:
    """Moves the processing of `dataset` onto the `tf.data` service.

    Everything `dataset` does runs on the service workers; this process only receives
    its elements. Build the whole pipeline first (batching included), then call this.

    Args:
        dataset: a `tf.data.Dataset` made of TensorFlow ops only (no `py_function`).
        service_address: the dispatcher, `"grpc://host:port"` or `"host:port"`.
        processing_mode: `"distributed_epoch"` (each element once per epoch over all
            workers) or `"parallel_epochs"` (each worker produces the whole dataset).
        job_name: consumers giving the same name share one job (each element goes to one
            of them) and read the dataset the first of them registered (under the id
            `"{job_name}.dataset"`, kept as long as the dispatcher runs); None: a job of this
            consumer alone. Distinct training runs sharing a dispatcher need distinct names.
        max_outstanding_requests: elements requested in parallel (memory bound);
            None: TensorFlow's default.
        compression: `"AUTO"` or None (no compression of the transferred elements).

    Returns:
        The distributed `tf.data.Dataset` (auto-sharding by `tf.distribute` turned off).

    Example:
        >>> dispatcher = start_dispatcher()
        >>> workers = [start_worker(dispatcher.address) for _ in range(2)]
        >>> ds = distribute_dataset(tf.data.Dataset.range(4), dispatcher.target,
        ...                         "parallel_epochs")
        >>> sorted(int(x) for x in ds)  # once per worker
        [0, 0, 1, 1, 2, 2, 3, 3]
        >>> for server in workers + [dispatcher]: server.stop()
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"`dataset` must be a tf.data.Dataset. Received: dataset={type(dataset).__name__}"
        )
    protocol, address = parse_service_address(service_address)
    policy = check_processing_mode(processing_mode)
    if job_name is not None and (not isinstance(job_name, str) or not job_name):
        raise ValueError(f"`job_name` must be a non-empty string. Received: job_name={job_name!r}")
    if compression not in ("AUTO", None):
        raise ValueError(
            f"`compression` must be 'AUTO' or None. Received: compression={compression!r}"
        )
    service = f"{protocol}://{address}"
    if job_name is None:
        ds = dataset.apply(
            _SERVICE.distribute(
                processing_mode=policy,
                service=service,
                max_outstanding_requests=max_outstanding_requests,
                compression=compression,
            )
        )
    else:
        # Registered under the job's name: every consumer of the job reads the dataset the
        # first one registered, even if their graphs differ (an unseeded random op, ...).
        dataset_id = _SERVICE.register_dataset(
            service, dataset, compression=compression, dataset_id=f"{job_name}.dataset"
        )
        ds = _SERVICE.from_dataset_id(
            processing_mode=policy,
            service=service,
            dataset_id=dataset_id,
            element_spec=dataset.element_spec,
            job_name=job_name,
            max_outstanding_requests=max_outstanding_requests,
        )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)
