"""Readers: one module per source format, each returning canonical :mod:`eyeful_tools.cameras`
objects (OpenCV camera axes, the source's own world tagged by ``Scene.world_up``)."""
