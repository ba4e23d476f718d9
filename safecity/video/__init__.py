"""Per-camera video analytics: from a stream of frames to counts and events.

One loop of small stages per camera (see ``pipeline``)::

    source (sources) -> background + people finder (detect) -> tracking (track)
      -> ground speed (motion), zone membership and per-bin features (zones)
      -> event rules (events/, one module per kind) -> blurred output frames
      (privacy, then annotate)

The stages exchange plain values: a frame is a BGR ``numpy`` array with its
index and UTC timestamp; the objects of one frame are a ``supervision.Detections``
(``xyxy`` boxes in pixels, ``class_id``, ``confidence``; once tracked, its
``tracker_id`` and, in ``data``, ``class_name``, ``speed_mps``, ``dir_x``,
``dir_y`` and ``in_zone:<zone>``); the tracks table (``frame, time_s, track_id,
x, y, w, h, cls, confidence``) is only an accumulated output. A camera is a
validated ``config.cameras.CameraConfig`` (its event rules are built from it) or
a scripted clip's ``scene`` dict (``safecity.sim.clips.scene_for``). Crowd
counting lives in ``counting``, frame-level anomaly scoring in ``anomaly``.
"""
