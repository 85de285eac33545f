"""Work-arounds for third-party packages that break on some machines (each says where and why)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def shield_broken_amdsmi() -> dict[str, str]:
    """Keep a broken `amdsmi` from crashing Ray or vLLM; return env vars for their child processes.

    Zeus depends on `amdsmi`, whose PyPI build raises KeyError on import where ROCm's libamd_smi.so
    is missing (any non-AMD machine); Ray's accelerator probe imports it without guarding against
    that and fails at `import ray` (seen with ray 2.60 / amdsmi 7.0.2) — also inside vLLM's engine
    processes, which import Ray. Where the import is broken
    we make it an ImportError — which both Ray and Zeus handle — in this process and, through a
    stub package on PYTHONPATH, in Ray's workers. Machines with a working amdsmi are untouched.
    """
    import contextlib
    import io
    import os
    import sys
    import tempfile
    from pathlib import Path

    if "amdsmi" in sys.modules:
        return {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # amdsmi prints to stdout when it fails
            import amdsmi  # noqa: F401
        return {}
    except ImportError:
        return {}
    except Exception:  # noqa: BLE001 - the KeyError described above, or any other broken import
        logger.info("amdsmi import is broken here; hiding it from Ray and vLLM")
    sys.modules["amdsmi"] = None  # type: ignore[assignment]  # later imports raise ImportError
    stub = Path(tempfile.mkdtemp(prefix="llm-energy-noamdsmi-"))
    (stub / "amdsmi").mkdir()
    (stub / "amdsmi" / "__init__.py").write_text(
        "raise ImportError('amdsmi hidden: libamd_smi.so is missing')\n"
    )
    # multiprocessing's spawn hands children the parent's sys.path (PYTHONPATH alone is overwritten there:
    # vLLM's engine core), Ray's workers read PYTHONPATH: the stub goes on both.
    sys.path.insert(0, str(stub))
    pythonpath = os.pathsep.join(p for p in (str(stub), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PYTHONPATH"] = (
        pythonpath  # child processes (a local Ray cluster, vLLM's engine core) inherit it
    )
    return {"PYTHONPATH": pythonpath}
