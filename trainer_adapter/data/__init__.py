"""Training data: ``parser`` (transforms.json -> arrays, no torch), ``rays`` (torch ray
generation), ``loader`` (lazy batched ray loader with a bounded decoded-image pool), ``cache``
(optional on-disk memmap cache of decoded pixels).

Import the submodules directly; this package imports nothing heavy.
"""
