"""Shared pytest setup. Keep this small; helpers live in tests/helpers_*.py."""
import sys
from pathlib import Path

# Let test modules `import helpers_frontend` under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))
