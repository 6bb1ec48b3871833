# Under CPython, pytest collects the portable test modules directly; this makes `import checks` work.
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
