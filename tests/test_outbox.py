"""The outbox's delivery states across restarts (issue 14 items 3 and 4), on a real positions.db."""

from __future__ import annotations

from position_manager import PositionStore
from store.outbox import DROPPED_BLOCKED, IN_FLIGHT_AT_START


def test_a_row_in_flight_at_a_kill_is_never_resent_after_the_restart(tmp_path):
    path = tmp_path / "positions.db"
    store = PositionStore(path)
    sending = store.enqueue(1, "being sent when killed")
    waiting = store.enqueue(2, "not tried yet")
    assert store.mark_sending(sending)
    assert [m.id for m in store.pending_outbox()] == [waiting]  # in flight is not pending for this process either
    store._conn.close()  # the kill: no mark_sent, no orderly close

    restarted = PositionStore(path)
    settled = restarted.settle_in_flight()
    assert [(m.id, m.chat_id, m.html) for m in settled] == [(sending, 1, "being sent when killed")]
    assert [m.id for m in restarted.pending_outbox()] == [waiting]  # the untried row is still delivered
    assert restarted.settle_in_flight() == []  # settled once
    counts = restarted.outbox_counts()
    assert (counts.pending, counts.sent, counts.failed) == (1, 1, 0)
    note = restarted._q("SELECT last_error FROM outbox WHERE id=?", (sending,))[0][0]
    assert note == IN_FLIGHT_AT_START
    restarted.close()


def test_a_failed_send_leaves_flight_and_is_retried(tmp_path):
    store = PositionStore(tmp_path / "positions.db")
    row = store.enqueue(1, "x")
    assert store.mark_sending(row) and not store.mark_sending(row)  # claimed once
    store.mark_failed(row, "network", permanent=False)
    assert [m.id for m in store.pending_outbox()] == [row] and store.settle_in_flight() == []
    store.close()


def test_a_blocked_chat_gets_nothing_queued_until_it_writes_and_that_survives_a_restart(tmp_path):
    path = tmp_path / "positions.db"
    store = PositionStore(path)
    store.subscribe(1)
    queued = [store.enqueue(1, f"alert {i}") for i in range(3)]
    other = store.enqueue(2, "other chat")
    assert store.block_chat(1) == 3
    assert [m.id for m in store.pending_outbox()] == [other]
    assert not store.mark_sending(queued[1])  # a drain holding a stale batch cannot claim a dropped row
    assert store.enqueue(1, "later") is None and not store.is_subscribed(1)
    store.close()

    store = PositionStore(path)
    assert store.is_blocked(1) and store.enqueue(1, "after restart") is None
    reasons = {r[0] for r in store._q("SELECT last_error FROM outbox WHERE chat_id=1")}
    assert reasons == {DROPPED_BLOCKED}
    assert store.unblock_chat(1) and not store.unblock_chat(1)
    assert store.enqueue(1, "after writing again") is not None and not store.is_subscribed(1)
    assert store.block_chat(1) == 1 and store.subscribe(1) and not store.is_blocked(1)  # /subscribe unblocks too
    store.close()
