"""Sliding-window inference over long videos and live streams, with bounded memory.

A video is cut into windows every `window_stride_seconds`: window `k` is centred at
`time = (k + 0.5) * stride` seconds and labels the interval `[k * stride, (k + 1) * stride)`
(the last one cut at the end of the video). Each window is scored on one clip: the
preset's `num_frames` frames every `sampling_rate` frames at `target_fps` (30), mapped to
the stream's own frames as PySlowFast maps a test clip (:func:`window_frame_indices`),
short side resized to the test crop size and centre-cropped (one view per window).

Windows and the end of the video:

- the video's length is its decoded frame count `N` at the stream's frame rate `fps`
  (frame ordinals, in decoder output order, are the time axis: frame `i` is at `i / fps`);
- window `k` exists when its centre lies before the end, `(k + 0.5) * stride * fps < N`;
  window 0 always exists (a video shorter than half a stride still gets one window, whose
  centre then lies past its end and whose clip is clamped);
- clip indices before the first frame are clamped to frame 0 and those past the last
  frame to frame `N - 1`, as PySlowFast clamps its test clips (so the first and last
  windows repeat the first and last frames).

Decoding is one sequential pass. Each frame is converted (RGB, resize, crop) only if a
pending window uses it, and kept only while one does; a window is scored as soon as its
last frame is decoded and a batch is full, so memory does not grow with the video's
length and a live source (a stream URL or device whose length is unknown) gets windows
with a latency of about half a clip plus a batch.

The modules: :mod:`keras_slowfast.streaming.windows` (the windows and their clips, decoded
in one pass), :mod:`keras_slowfast.streaming.scoring` (scoring them with a model: the
timeline), :mod:`keras_slowfast.streaming.features` (pooled backbone features of the
windows) and :mod:`keras_slowfast.streaming.feature_writer` (the features of many videos
written to a folder, resumably). This package exports their public names.
"""

from keras_slowfast.streaming.feature_writer import (
    FAILURES_FILE as FAILURES_FILE,  # the failures list save_features writes
)
from keras_slowfast.streaming.feature_writer import SaveSummary, save_features, video_list
from keras_slowfast.streaming.features import Features, extract_features, feature_model
from keras_slowfast.streaming.scoring import timeline
from keras_slowfast.streaming.windows import Window, window_clips, window_frame_indices

__all__ = [
    "Features",
    "Window",
    "extract_features",
    "SaveSummary",
    "feature_model",
    "save_features",
    "timeline",
    "video_list",
    "window_clips",
    "window_frame_indices",
]
