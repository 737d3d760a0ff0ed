"""Duration-aware assignment: deterministic for redeliveries, restarts and duplicates, and
better balanced in seconds than plain rendezvous hashing on the same seeded batch."""

from bench.assignment_balance import fleet, imbalance, route_all, uploads
from cli.audio import CallLengths
from services.distributor.assignment import FileMemo, UploadLedger, choose_host
from services.distributor.routing import Incoming, observe_upload, route_upload
from shared.events import BatchClosed, FileStageCompleted, FileUploaded, encode
from shared.settings import GpuHost
from shared.topics import Topics

HOSTS = fleet(4)
LENGTHS = CallLengths(sigma=1.5, seed=11).draw(3_000)
RECORDS = uploads("b1", LENGTHS)


def _host(record: Incoming, ledger: UploadLedger, hosts: list[GpuHost] = HOSTS) -> str:
    [output] = route_upload(record, hosts, Topics("balance"), ledger=ledger)
    assert isinstance(output.event, FileStageCompleted)
    host = output.event.context.host
    assert host is not None
    return host


def test_the_same_partition_gives_the_same_placement() -> None:
    assert route_all(RECORDS, HOSTS, UploadLedger()) == route_all(RECORDS, HOSTS, UploadLedger())


def test_it_balances_seconds_better_than_rendezvous_on_the_same_batch() -> None:
    hashed = imbalance(route_all(RECORDS, HOSTS, None), LENGTHS, HOSTS)
    aware = imbalance(route_all(RECORDS, HOSTS, UploadLedger()), LENGTHS, HOSTS)
    assert aware < hashed
    assert aware < 1.01


def test_a_redelivered_upload_gets_its_first_host_and_changes_nothing() -> None:
    ledger = UploadLedger()
    first = route_all(RECORDS, HOSTS, ledger)
    redelivered = [_host(r, ledger) for r in RECORDS[100:400]]  # e.g. after a rebalance
    assert redelivered == first[100:400]
    # ... and later uploads are placed as if the redeliveries never happened.
    more = uploads("b1", LENGTHS + CallLengths(sigma=1.5, seed=12).draw(200))[len(RECORDS) :]
    reference = UploadLedger()
    route_all(RECORDS, HOSTS, reference)
    assert [_host(r, ledger) for r in more] == [_host(r, reference) for r in more]


def test_a_restarted_distributor_replays_the_partition_and_continues_identically() -> None:
    before_crash = UploadLedger()
    whole = route_all(RECORDS, HOSTS, before_crash)
    restarted = UploadLedger()
    assert restarted.needs_replay(0, 1_700)
    restarted.start(0, 0)
    for record in RECORDS[:1_700]:  # what ledger_replay feeds it, producing nothing
        observe_upload(record, HOSTS, restarted)
    assert not restarted.needs_replay(0, 1_700)
    assert [_host(r, restarted) for r in RECORDS[1_700:]] == whole[1_700:]
    # A gap (records another worker routed) also asks for a replay.
    assert restarted.needs_replay(0, len(RECORDS) + 5)


def test_a_duplicate_upload_at_a_later_offset_goes_to_the_same_host() -> None:
    ledger = UploadLedger()
    first = route_all(RECORDS, HOSTS, ledger)
    closed = Incoming("t", 0, len(RECORDS), b"b1", encode(BatchClosed(batch_id="b1", file_count=3)))
    assert route_upload(closed, HOSTS, Topics("balance"), ledger=ledger) == []
    for i in (0, 5, 17, 2_999):
        dup = RECORDS[i]
        again = Incoming(dup.topic, 0, len(RECORDS) + 1 + i, dup.key, dup.value)
        assert _host(again, ledger) == first[i]


def test_uploads_without_a_duration_keep_their_rendezvous_host() -> None:
    ledger = UploadLedger()
    route_all(RECORDS[:500], HOSTS, ledger)
    for i in range(20):
        event = FileUploaded(batch_id="b1", file_name=f"x{i}.wav", audio_uri="file:///x.wav")
        record = Incoming("t", 0, 500 + i, b"b1", encode(event))
        assert _host(record, ledger) == choose_host("b1", f"x{i}.wav", HOSTS)


def test_equal_lengths_are_balanced_by_count() -> None:
    lengths = CallLengths(sigma=0).draw(2_000)
    records = uploads("b2", lengths)
    assert imbalance(route_all(records, HOSTS, UploadLedger()), lengths, HOSTS) < 1.01


def test_the_file_memo_finds_what_it_was_given() -> None:
    memo = FileMemo()
    for i in range(1_000):
        memo.put(f"f{i}", i % 4)
    memo.put("f7", 2)
    assert len(memo) == 1_000
    assert [memo.get(f"f{i}") for i in range(6, 9)] == [2, 2, 0]
    assert memo.get("never") is None


def test_a_down_host_gets_no_file() -> None:
    hosts = [*HOSTS[:3], GpuHost(ip=HOSTS[3].ip, capacity=4, down=True)]
    assert HOSTS[3].ip not in route_all(RECORDS, hosts, UploadLedger())
