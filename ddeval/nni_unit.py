"""The trial command of :class:`ddeval.executor.NNIExecutor`: run one pickled unit, store its result.

``python -m ddeval.nni_unit UNITS_FOLDER RUN_DIR``: NNI's tuner gives this trial the key of one unit; the
unit is read from ``UNITS_FOLDER/<key>.pkl`` (written by the executor of this run, and unpickled only when its
SHA-256 matches the digest the executor passed with the key), computed, and stored in
``RUN_DIR`` exactly as the local executor would store it. The metric reported to NNI is the unit's seconds.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import nni

    from ddeval.executor import _timed
    from ddeval.runs import RunDir

    folder, run_path = (argv if argv is not None else sys.argv[1:])[:2]
    key, digest = str(nni.get_next_parameter()["unit"]).split(":")
    blob = (Path(folder) / f"{key}.pkl").read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        print(f"ddeval: {folder}/{key}.pkl is not the unit this run wrote (checksum mismatch); not loading it.",
              file=sys.stderr)
        return 2
    unit = pickle.loads(blob)  # exactly the bytes this run's executor wrote (checked above)
    run_dir = RunDir(run_path)
    result, seconds = _timed(unit.fn, unit.args, dict(unit.kwargs))
    run_dir.store(unit.kind, unit.spec, result, seconds=seconds)
    nni.report_final_result(seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
