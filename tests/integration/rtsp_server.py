"""The real RTSP test server (gst-rtsp-server): it lives in :mod:`streamcount.bench.rtsp_server`
so that ``streamcount bench capacity --rtsp`` can start it too; re-exported here for the
tests."""

from streamcount.bench.rtsp_server import (RtspServer, ffmpeg_missing, free_port,
                                           gst_rtsp_missing, make_h264_clip, repeat_clip)

__all__ = ["RtspServer", "ffmpeg_missing", "free_port", "gst_rtsp_missing", "make_h264_clip",
           "repeat_clip"]
