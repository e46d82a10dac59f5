"""One worker of a two-process MultiWorkerMirroredStrategy run (TF_CONFIG from the caller).

Usage: python multi_worker.py LIST_FILE MODEL_DIR WEIGHTS_OUT EPOCHS STEPS_PER_EPOCH
"""

import json
import sys

import tensorflow as tf

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)

from keras_slowfast import SlowFast, training  # noqa: E402


def main(list_file, model_dir, weights_out, epochs, steps_per_epoch, single_pathway):
    strategy = training.get_strategy("multi_worker", communication="ring")
    global_batch = 2 * strategy.num_replicas_in_sync
    with strategy.scope():
        model = SlowFast(
            depth=50,
            num_frames=8,
            alpha=4,
            width_per_group=8,
            classes=3,
            input_shape=(8, 32, 32, 3),
            train_crop_size=32,
            single_pathway=single_pathway,
            sync_bn=True,
        )
        optimizer = training.create_optimizer(
            model,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            global_batch_size=global_batch,
            base_lr=0.4,
            warmup_epochs=1,
        )
    trainer = training.DistributedTrainer(
        model, optimizer, model_dir, strategy, log_every_n_steps=1
    )
    dataset_fn = training.kinetics_input_fn(
        list_file,
        global_batch,
        mode="train",
        num_frames=8,
        sampling_rate=2,
        crop_size=32,
        jitter_scales=(32, 40),
        seed=1,
    )
    history = trainer.fit(dataset_fn, epochs, steps_per_epoch)
    model.save_weights(weights_out)
    print(
        "RESULT "
        + json.dumps({"history": history, "step": trainer.global_step, "chief": trainer.is_chief}),
        flush=True,
    )


if __name__ == "__main__":
    main(*sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "slow")
