"""One module per command (``check``, ``bench``, ``train`` and ``sample``, ``port``, ``losscheck``),
and what every command shares (:mod:`.common`). :mod:`gan_backends.cli` registers them. Each
command parses its options, calls its job and prints; the jobs hold the logic."""
