"""The hardening suite's one scenario with the real firmware: a virtual board (the unmodified firmware in
the MicroPython VM, pinseal_devkit.devices) beside simulated devices, through a gateway SIGKILLed while it
holds a group before its COMMIT (pinseal_gateway.faults).

The board's readings cannot be known on the host before it seals them, so its side of the accounting is
what the gateway stored from it: seqs 0..n without a hole or a repeat (nothing lost or duplicated on the
way in), and exactly those readings, value by value, at the network ingest. The simulated devices are
accounted from their own samples as in every other scenario. One board only: booting the VM is slow.
"""

from __future__ import annotations

import pytest

from pinseal_devkit.devices import start_device
from pinseal_hil.scenario import scenario, wait_for
from pinseal_protocol import keys
from pinseal_vboard import BoardHost

pytestmark = [pytest.mark.vm, pytest.mark.broker]


def test_firmware_board_and_simulated_devices_through_a_gateway_sigkill(tmp_path) -> None:
    held = tmp_path / "held"
    env = {"PINSEAL_FAULT_HOLD_BEFORE_COMMIT": str(held)}
    with scenario("board: firmware + SIGKILL", tmp_path, gateway_env=env) as s:
        s.honest(2, bundles=60)
        host = BoardHost()
        board, info = start_device(
            host, s.stack, tmp_path / "flash", bundling={"readings": 2, "max_wait_s": 30}
        )
        kid = bytes.fromhex(info["key_id"])
        try:
            s.start(period_s=0.1)
            board.clock(speed=5.0)
            board.reset()
            board.wait_for_output(b"pinseal: device ")
            wait_for(held.exists, "the gateway to hold before a COMMIT", 60)
            s.restart_gateway(kill=True)

            def board_readings() -> int:
                with s.gateway_db() as db:
                    return db.execute(
                        "SELECT count(*) FROM readings WHERE kid = ? AND name = 't'", (kid,)
                    ).fetchone()[0]

            wait_for(lambda: board_readings() >= 12, "12 readings from the board", 90)
        finally:
            board.stop()
            host.close()
        s.wait_produced()
        s.settle()
        with s.gateway_db() as db:
            rows = db.execute(
                "SELECT seq, last_seq, raw FROM bundles WHERE kid = ? ORDER BY seq", (kid,)
            ).fetchall()
            (gaps,) = db.execute(
                "SELECT count(*) FROM bundles WHERE kid = ? AND chain_gap != 0", (kid,)
            ).fetchone()
        seqs = [q for first, last, _ in rows for q in range(first, last + 1)]
        assert seqs == list(range(len(seqs))) and gaps == 0  # from seq 0, no hole, no repeat
        public_key = keys.load_public_key(bytes.fromhex(info["public_key"]))
        for _, _, raw in rows:
            s.ledger.record_bundle(raw, public_key)
        r = s.finish({})
        r.notes["board_readings"] = len(seqs)
