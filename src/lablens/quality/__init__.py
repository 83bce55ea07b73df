"""Image quality: cheap per-image measures, a reproducible degradation protocol, and a learned quality score."""
