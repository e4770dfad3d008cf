"""One frame of a video file, numbered as decord numbers it for the official AudioSet loader.

The official loader reads ``video_path`` with decord (``at_processor.py``: ``decord_read_video``,
``decord_get_clip``). decord counts a video's frames by its video packets and orders them by their
presentation timestamps (``VideoReader::IndexKeyframes``), and its fps is the stream's average frame
rate (``get_avg_fps``). ``decord_get_clip`` turns a window ``(start, end)`` into the frames
``max(0, int(start · fps))`` up to ``min(int(end · fps) + 1, count)``, of which
``UniformTemporalSubsample(1)`` (``--n_frames 1``) keeps the first: :func:`window_frame`.

Decoding is PyAV's (FFmpeg): the container is opened and closed per call, so DataLoader workers forked
after a frame was read share no decoder; one demuxing pass reads the packets' timestamps (no decoding),
then a seek to the keyframe at or before the wanted frame and decoding forward to it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VitlensError, os_reason


def window_frame(start: float, fps: float, count: int) -> int:
    """The frame of ``count`` at ``fps`` paired with a window starting at ``start`` seconds.

    A window starting past the last frame takes the last: windows here are drawn over the audio, which
    may run a little longer than its video; the official loader draws them over the video's own duration
    and so never asks for one (an empty range would fail there).
    """
    return min(max(0, int(start * fps)), count - 1)


def read_frame(path: str | Path, start: float) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB frame of the video at ``path`` that :func:`window_frame` pairs with a
    window starting at ``start`` seconds. Raises :class:`VitlensError` naming ``path`` when the file is
    missing, is not a decodable video, has no video stream or frame rate, or holds fewer packets than its
    header declares (a cut file)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.best("video")
            if stream is None:
                raise VitlensError(path, "no video stream")
            if not stream.average_rate:
                raise VitlensError(path, "the video stream declares no frame rate")
            # one thread: workers already decode in parallel, and decord_read_video asks for num_threads=1
            stream.codec_context.thread_count = 1
            timestamps, keyframes = [], []
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:  # not the empty packet that flushes the decoder
                    timestamps.append(packet.pts)
                    if packet.is_keyframe:
                        keyframes.append(packet.pts)
            timestamps.sort()
            if not timestamps:
                raise VitlensError(path, "the video stream holds no frames")
            if stream.frames > len(timestamps):
                raise VitlensError(path, f"truncated: {len(timestamps)} of {stream.frames} video frames present")
            index = window_frame(start, float(stream.average_rate), len(timestamps))
            target = timestamps[index]
            # from the last keyframe shown at or before the frame: B-frames decoded after a keyframe may be
            # shown before it and lean on the previous keyframe's frames (an open GOP)
            before = [pts for pts in keyframes if pts <= target]
            frame = _decode_to(container, stream, max(before, default=timestamps[0]), target)
            if frame is None:  # the seek overshot (a container indexed otherwise): from the start
                frame = _decode_to(container, stream, timestamps[0], target)
            if frame is not None:
                return frame.to_ndarray(format="rgb24")
    except OSError as exc:  # PyAV raises the system's errors (no such file, permission) as OSError subclasses
        raise VitlensError(path, os_reason(exc, path)) from None
    except av.FFmpegError as exc:
        raise VitlensError(path, f"not a decodable video ({(exc.strerror or type(exc).__name__).lower()})") from None
    raise VitlensError(path, f"frame {index} of {len(timestamps)} could not be decoded")


def _decode_to(container, stream, seek: int, target: int):
    """The first frame shown at or after ``target`` decoding on from the keyframe at or before ``seek``
    (stream time base); None when the first frame decoded is already past ``target``."""
    container.seek(seek, stream=stream, backward=True, any_frame=False)
    first = True
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        if frame.pts >= target:
            return frame if frame.pts == target or not first else None
        first = False
    return None
