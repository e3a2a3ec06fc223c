# The normative vectors (protocol/vectors/*.json, mounted at /vectors in the VM) for the firmware tests.
# A missing vector set is a failure, never a skip: the device side is only proven if it ran against them.
import json
import os

VECTORS_DIR = "/vectors"


def load(kind):
    """(file name, vector) for every vector of one kind ("bundle", "ack" or "rejection"), in name order."""
    found = []
    for name in sorted(os.listdir(VECTORS_DIR)):
        if not name.endswith(".json"):
            continue
        with open(VECTORS_DIR + "/" + name) as f:
            vector = json.load(f)
        if vector.get("kind") == kind:
            found.append((name, vector))
    assert found, "no %s vectors in %s" % (kind, VECTORS_DIR)
    return found
