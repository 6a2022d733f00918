"""Data: datasets, attribute encodings, clip sampling, samplers, transforms and loaders.

Entry points: :func:`build_dataset` (the parsed dataset of a config) and
:func:`make_data_loaders` (train, query and gallery loaders plus the dataset).
"""

from data.build import attribute_mode, build_dataset, make_data_loaders

__all__ = ["attribute_mode", "build_dataset", "make_data_loaders"]
