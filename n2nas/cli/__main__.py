"""``python -m n2nas.cli ...`` (and ``mpiexec -n N python -m mpi4py -m n2nas.cli search --backend mpi ...``)."""
import sys

from n2nas.cli import main

sys.exit(main())
