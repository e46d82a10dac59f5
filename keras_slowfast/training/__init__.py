"""Training: PySlowFast's schedule and optimizer, precise BN, strategies, a multi-worker loop.

The AVA detector recipe is here too: `ava_loss`, `create_ava_optimizer` and
`load_classifier_backbone` (a detector initialised from a Kinetics classifier).

Example:
    >>> import keras_slowfast
    >>> from keras_slowfast import training
    >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=5)
    >>> opt = training.create_optimizer(model, epochs=10, steps_per_epoch=50,
    ...                                 global_batch_size=8, warmup_epochs=1)
    >>> model.compile(opt, "sparse_categorical_crossentropy")
"""

from keras_slowfast.training.backbone import BackboneLoadReport, load_classifier_backbone
from keras_slowfast.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicModelCheckpoint,
    AvaFrameMAP,
    LearningRateLogger,
    resume_epoch,
    save_weights_atomically,
    standard_callbacks,
)
from keras_slowfast.training.data_service import (
    PROCESSING_MODES,
    DataServiceServer,
    distribute_dataset,
    parse_service_address,
    start_dispatcher,
    start_worker,
)
from keras_slowfast.training.loop import DistributedTrainer, kinetics_input_fn, tfrecord_input_fn
from keras_slowfast.training.losses import AvaBinaryCrossentropy, ava_loss
from keras_slowfast.training.optimizers import (
    TorchSGD,
    create_ava_optimizer,
    create_optimizer,
    no_weight_decay_variables,
)
from keras_slowfast.training.precise_bn import PreciseBatchNorm, update_bn_stats
from keras_slowfast.training.schedules import (
    StepsWithRelativeLRs,
    WarmupCosineDecay,
    scale_learning_rate,
)
from keras_slowfast.training.strategy import (
    STRATEGIES,
    convert_sync_batchnorm,
    get_strategy,
    is_chief,
    set_mixed_precision,
    transfer_weights,
)

__all__ = [
    "PROCESSING_MODES",
    "STRATEGIES",
    "AtomicBackupAndRestore",
    "AtomicModelCheckpoint",
    "AvaBinaryCrossentropy",
    "AvaFrameMAP",
    "BackboneLoadReport",
    "DataServiceServer",
    "DistributedTrainer",
    "LearningRateLogger",
    "PreciseBatchNorm",
    "StepsWithRelativeLRs",
    "TorchSGD",
    "WarmupCosineDecay",
    "ava_loss",
    "convert_sync_batchnorm",
    "create_ava_optimizer",
    "create_optimizer",
    "distribute_dataset",
    "get_strategy",
    "is_chief",
    "kinetics_input_fn",
    "load_classifier_backbone",
    "no_weight_decay_variables",
    "parse_service_address",
    "resume_epoch",
    "save_weights_atomically",
    "scale_learning_rate",
    "set_mixed_precision",
    "standard_callbacks",
    "start_dispatcher",
    "start_worker",
    "tfrecord_input_fn",
    "transfer_weights",
    "update_bn_stats",
]
