"""The ``landscape`` command-line interface: :mod:`main` parses, one module per command group.

Top layer, beside :mod:`landscape.dashboard`: may import every backend layer. Every command prints
JSON on stdout; bad input exits with code 2 and one line on stderr.
"""
