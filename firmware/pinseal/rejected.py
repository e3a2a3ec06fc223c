# The gateway's signed rejection (docs/protocol.md §5.1), already verified by pinseal.wire.ack: what the
# device does about it. A module of its own because it is rare: its code is loaded only when one comes.
import hashlib


def on_rejection(app, next_seq, bundle_hash, reason):
    """When it names the oldest bundle, no resend can cure that bundle: it goes (or it blocks everything
    behind it), and counting moves up to where the gateway accepts again. Naming any other bundle, it is
    only logged."""
    app.stats["rejected"] += 1
    oldest = app.outbox.oldest_bundle()
    if oldest is None or hashlib.sha256(oldest[2]).digest() != bundle_hash:
        print("pinseal: gateway rejected a bundle no longer queued:", reason)
        return
    app.counters.skip_to(next_seq)
    print(
        "pinseal: gateway rejected readings %d..%d (%s): dropped; counting goes on from %d"
        % (oldest[0], oldest[1], reason, app.counters.peek())
    )
    if app.outbox.ack(oldest[1]):
        app._acked.set()
