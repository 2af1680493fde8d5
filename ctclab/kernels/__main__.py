"""``python -m ctclab.kernels``: build the compiled ops for this machine (see ctclab.kernels)."""

from ctclab.kernels import main

main()
