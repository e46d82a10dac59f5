"""Data pipelines: PySlowFast-exact clip sampling, PyAV decoding, JPEG-frame TFRecords, AVA."""

from keras_slowfast.data.ava import (
    ava_dataset,
    ava_sequence,
    ava_transform,
    load_ava_annotations,
    scale_short_side,
)
from keras_slowfast.data.ava_extract import extract_ava_frames
from keras_slowfast.data.ava_video import (
    count_frames_at_fps,
    iter_frames_at_fps,
    read_frames_at_fps,
)
from keras_slowfast.data.kinetics import kinetics_dataset, read_video_list
from keras_slowfast.data.sampling import (
    VideoInfo,
    frame_indices_from_timestamps,
    segment_indices,
    slow_pathway_indices,
    start_end_index,
    temporal_sample_indices,
    torch_linspace,
)
from keras_slowfast.data.tfrecord import (
    frame_indices_from_timestamps_tf,
    frame_tfrecord_dataset,
    torch_linspace_tf,
    write_frame_tfrecords,
)
from keras_slowfast.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    normalize,
    resize_short_side,
    short_side_scale_size,
    uniform_crop_offset,
)
from keras_slowfast.data.video import (
    DecodeErrorCounter,
    VideoReadError,
    clip_frame_indices,
    decode_all_frames,
    decode_timestamps,
    probe_video,
    read_clip,
    read_test_views,
)

__all__ = [
    "ava_dataset",
    "ava_sequence",
    "ava_transform",
    "load_ava_annotations",
    "scale_short_side",
    "segment_indices",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "DecodeErrorCounter",
    "VideoInfo",
    "VideoReadError",
    "clip_frame_indices",
    "count_frames_at_fps",
    "decode_all_frames",
    "decode_timestamps",
    "extract_ava_frames",
    "frame_indices_from_timestamps",
    "frame_indices_from_timestamps_tf",
    "frame_tfrecord_dataset",
    "iter_frames_at_fps",
    "kinetics_dataset",
    "normalize",
    "probe_video",
    "read_clip",
    "read_frames_at_fps",
    "read_test_views",
    "read_video_list",
    "resize_short_side",
    "short_side_scale_size",
    "slow_pathway_indices",
    "start_end_index",
    "temporal_sample_indices",
    "torch_linspace",
    "torch_linspace_tf",
    "uniform_crop_offset",
    "write_frame_tfrecords",
]
