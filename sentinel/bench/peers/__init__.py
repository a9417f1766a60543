"""The peers Sentinel is compared with: PyTriton serving the same ONNX Runtime session, and a
gunicorn + Flask JSON server (what teams hand-build)."""
