"""Configuration: the shared config defaults that ``configs/*.py`` build on, the VOC class names, and the one way
to load a config (a ``configs/*.py`` file, a training workdir's ``config.json``, or a workdir). Imports only
ml_collections, so configs stay light."""
