"""Work-arounds for third-party packages that break on some machines (each says where and why)."""

from __future__ import annotations

import functools
import logging
import sys

logger = logging.getLogger(__name__)


def hide_broken_amdsmi() -> bool:
    """Make a broken `amdsmi` import raise ImportError in this process; return whether it is broken.

    Zeus depends on `amdsmi`, whose PyPI build raises KeyError on import where ROCm's libamd_smi.so
    is missing (any non-AMD machine). Zeus then logs a WARNING on every GPU lookup (so on every
    `llm-energy env` or `replay`), and Ray's accelerator probe, which does not guard against it,
    fails at `import ray` (seen with ray 2.60 / amdsmi 7.0.2). An ImportError both handle quietly.
    Machines with a working amdsmi (or none at all) are untouched. Idempotent.
    """
    import contextlib
    import io

    if "amdsmi" in sys.modules:
        return sys.modules["amdsmi"] is None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # amdsmi prints to stdout when it fails
            import amdsmi  # noqa: F401
        return False
    except ImportError:
        return False
    except Exception:  # noqa: BLE001 - the KeyError described above, or any other broken import
        logger.info("amdsmi import is broken here; hiding it from Zeus, Ray and vLLM")
    sys.modules["amdsmi"] = None  # type: ignore[assignment]  # later imports raise ImportError
    return True


@functools.cache
def _amdsmi_stub() -> str:
    """A folder holding an `amdsmi` package that raises ImportError (made once per process)."""
    import tempfile
    from pathlib import Path

    stub = Path(tempfile.mkdtemp(prefix="llm-energy-noamdsmi-"))
    (stub / "amdsmi").mkdir()
    (stub / "amdsmi" / "__init__.py").write_text(
        "raise ImportError('amdsmi hidden: libamd_smi.so is missing')\n"
    )
    return str(stub)


def shield_broken_amdsmi() -> dict[str, str]:
    """Hide a broken `amdsmi` here and from child processes; return env vars for those children.

    Besides `hide_broken_amdsmi` in this process, a stub package that raises ImportError goes on
    `sys.path` and `PYTHONPATH`: Ray's workers and vLLM's engine processes import Ray, which imports
    amdsmi unguarded. Returns {} where amdsmi is not broken, else {"PYTHONPATH": ...} (also set in
    `os.environ`, so a local Ray cluster or vLLM's engine core inherit it).
    """
    import os

    if not hide_broken_amdsmi():
        return {}
    stub = _amdsmi_stub()
    # multiprocessing's spawn hands children the parent's sys.path (PYTHONPATH alone is overwritten
    # there: vLLM's engine core), Ray's workers read PYTHONPATH: the stub goes on both.
    if stub not in sys.path:
        sys.path.insert(0, stub)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if stub not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([stub, *parts])
    return {"PYTHONPATH": os.environ["PYTHONPATH"]}
