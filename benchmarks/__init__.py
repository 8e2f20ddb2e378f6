"""Benchmarks: asv suites (``bench_*.py``, helpers in ``_asv_common.py``) and standalone scripts (``*_family.py``).

asv needs this file to import the folder as a package; it imports every module in it during discovery.
"""

import warnings

# escnn warns at import that py3nj (a Fortran build, left out on purpose) is missing; only SO(3) needs it.
warnings.filterwarnings("ignore", message=".*py3nj.*", category=UserWarning)
