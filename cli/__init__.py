"""The ``kres`` command line, installed as the ``kres`` package. Thin: it parses, validates and calls
one library function per command; the library never imports click."""
