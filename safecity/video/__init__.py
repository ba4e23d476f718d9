"""Per-camera video analytics: from a stream of frames to counts and events.

One loop of small stages per camera (see ``pipeline``)::

    source (sources) -> background + detection (detect) -> tracking (track)
      -> event detectors (events, repeat) -> per-bin features (pipeline)
      -> blurred output frames (privacy)

The stages exchange plain values: a frame is a BGR ``numpy`` array with its
index and UTC timestamp; the tracked objects of one frame are a DataFrame with
columns ``frame, time_s, track_id, x, y, w, h, cls, confidence`` (pixels, box
top-left corner; ``cls`` is ``person`` or ``object``); a camera's settings are
the ``scene`` dict that ``config.CameraConfig.scene()`` returns, the same shape
as ``safecity.sim.clips.scene_for``. Crowd counting lives in ``counting``.
"""
