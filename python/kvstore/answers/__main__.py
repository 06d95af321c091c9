"""`python -m kvstore.answers [--policy P...] [-o TABLE.md] [--json FILE]`: the real-model
answers benchmark (kvstore.answers.benchmark)."""
import sys

from .benchmark import main

sys.exit(main())
