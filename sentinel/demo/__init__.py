"""`sentinel demo`: a realistic bad deploy end to end on a real Triton, watched by the sidecar."""
