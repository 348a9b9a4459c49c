"""Captures: lobstream's recording format, its reader, writer and live recorder, and
the converter from other recorders' files.

``format`` (the specification, and the names other packages import), ``codec``
(the pure line codec), ``reader``, ``writer`` (one file), ``recorder`` (rotating
files per connection stream, I/O errors contained), ``venues`` (the replayable
venues and how recorder files name them), ``products`` (the converter's product
filter), ``inputs/`` (one reader per recorder format) and ``convert`` (driver and
command line).
"""
