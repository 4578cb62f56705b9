"""Re-export of the reference models in Tools/reference/models.py (single source of truth).

Loads that file by path under the module name "lathe_reference_models", so importing
this module does not depend on sys.path or on the working directory.
"""
import importlib.util
import os
import sys

_PATH = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "Tools", "reference", "models.py"))
_NAME = "lathe_reference_models"

if _NAME in sys.modules:
    _mod = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _mod
    _spec.loader.exec_module(_mod)

__all__ = list(_mod.__all__)
globals().update({name: getattr(_mod, name) for name in __all__})
