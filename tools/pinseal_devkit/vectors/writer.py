"""Turn the tables of cases into protocol/vectors/*.json (and batch/*.json): the only code that writes them.

Stale files (a case renamed or removed) are deleted, so the folder always holds exactly the tables.
"""

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pinseal_devkit.vectors import single_file
from pinseal_devkit.vectors.ack_cases import ack_cases
from pinseal_devkit.vectors.bundle_cases import bundle_cases
from pinseal_devkit.vectors.records import ack_vector, bundle_vector, rejection_vector
from pinseal_devkit.vectors.rejection_cases import rejection_cases

MESSAGE_KINDS = ("bundle", "ack", "rejection")
"""The kinds of message vector; each is in `<kind>_*.json` with its bytes under the key `<kind>`."""

REFERENCE_BUNDLE = "bundle_one_reading_thp"
"""The bundle the ack and rejection vectors name."""


def generate() -> dict[str, dict[str, Any]]:
    """Every bundle, ack and rejection vector by file stem."""
    bundles = bundle_cases()
    reference = next(case.message for case in bundles if case.name == REFERENCE_BUNDLE)
    vectors = {case.name: bundle_vector(case) for case in bundles}
    vectors.update((case.name, ack_vector(case)) for case in ack_cases(reference))
    vectors.update((case.name, rejection_vector(case)) for case in rejection_cases(reference))
    return vectors


def write(outdir: Path, vectors: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Write `<name>.json` files into `outdir`, replacing stale message vector files, then the
    batches, the MQTT and serial frames and the BLE link, so one command writes them all."""
    from pinseal_devkit.vectors import ble_link_cases, mqtt_frame_cases, serial_frame_cases

    vectors = generate() if vectors is None else vectors
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in [p for kind in MESSAGE_KINDS for p in outdir.glob(f"{kind}_*.json")]:
        if stale.stem not in vectors:
            stale.unlink()
    paths = [single_file.write_json(outdir / f"{name}.json", vector) for name, vector in vectors.items()]
    framing = [mqtt_frame_cases.write(outdir), serial_frame_cases.write(outdir), ble_link_cases.write(outdir)]
    return [*paths, *write_batches(outdir / "batch"), *framing]


def write_batches(outdir: Path) -> list[Path]:
    """The batch vectors (`batch_cases`) into their own folder, stale ones removed."""
    from pinseal_devkit.vectors.batch_cases import batch_vectors  # signs its bundles on import

    vectors = batch_vectors()
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.glob("batch_*.json"):
        if stale.stem not in vectors:
            stale.unlink()
    return [single_file.write_json(outdir / f"{name}.json", vector) for name, vector in vectors.items()]


def main(argv: Sequence[str] = tuple(sys.argv[1:]), echo: Callable[[str], Any] = print) -> int:
    """`python -m pinseal_devkit.vectors OUTDIR`: 0 when written, 2 on a usage error."""
    if len(argv) != 1:
        echo("usage: python -m pinseal_devkit.vectors OUTDIR")
        return 2
    paths = write(Path(argv[0]))
    echo(f"wrote {len(paths)} vectors to {argv[0]}")
    return 0
