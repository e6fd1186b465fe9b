"""``eyeful view``: cameras, splits, world frames and scene points of a dataset in a browser.

``content`` reads what to show (numpy only); ``server`` draws it with viser, the optional
``view`` extra, imported lazily so the rest of eyeful runs without it.
"""
