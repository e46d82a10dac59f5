"""A short `model.fit` on the video dataset with a narrow SlowFast, and test-mode scoring.

The model runs eagerly: what is checked here is the dataset feeding `fit` and multi-view
scoring; tracing the SlowFast train step (graph-mode `fit`) is the training tests' subject.
"""

import numpy as np
import pytest

import keras_slowfast
from keras_slowfast import data


# The dataset's length is unknown until its first pass (skipped videos are
# filtered out), which Keras reports at the end of the first epoch.
@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_fit_and_multi_view_predict_on_video_dataset(videos):
    keras = pytest.importorskip("keras")
    entries = [(str(videos / n), i) for i, n in enumerate(["bikes.mp4", "k00.mp4", "k03.mp4"])]
    clip = dict(num_frames=8, sampling_rate=8)
    train = data.kinetics_dataset(
        entries * 2, "train", crop_size=64, jitter_scales=(64, 80), batch_size=2, seed=0, **clip
    )
    model = keras_slowfast.SlowFast(
        depth=50,
        num_frames=8,
        alpha=4,
        width_per_group=8,
        classes=3,
        input_shape=(8, 64, 64, 3),
        train_crop_size=64,
        include_preprocessing=True,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=True,
    )
    history = model.fit(train, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])

    test = data.kinetics_dataset(
        entries, "test", crop_size=64, num_temporal_views=2, batch_size=6, **clip
    )
    scores = np.zeros((3, 3))
    for clips, _, video_index, _ in test:
        probs = model.predict_on_batch(clips)
        np.add.at(scores, video_index.numpy(), probs)
    # Every video got 2 temporal x 3 spatial views of softmax scores.
    np.testing.assert_allclose(scores.sum(axis=1), 6.0, rtol=1e-4)
