"""The folder mounted read-only into every task and put first on PYTHONPATH.

Its `datmo` package is standard-library only, so `import datmo` works inside
any container with no install and no access to the project's store.
"""

from pathlib import Path

PATH = Path(__file__).parent
