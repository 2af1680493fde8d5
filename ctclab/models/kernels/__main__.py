"""``python -m ctclab.models.kernels``: build the compiled GRU op for this machine (see ctclab.models.fused)."""

from ctclab.models.fused import main

main()
