"""The normative test vectors of protocol/vectors/ (docs/protocol.md), generated deterministically.

    python -m pinseal_devkit.vectors OUTDIR        (make vectors)

Fixed seeds (`pinseal_devkit.test_keys`), fixed times and Ed25519's deterministic signatures make the
output identical on every run, so `make vectors` followed by `git diff` shows exactly what changed.
The generator lives here, not in `pinseal_protocol`: the runtime codec carries no test keys. One module
a job: `inputs` (fields and readings, their JSON form), `craft` (hand-made messages for the defects),
`records` (a vector's JSON record), `bundle_cases`, `ack_cases` and `batch_cases` (the tables of cases),
`writer` (files and CLI).
"""
