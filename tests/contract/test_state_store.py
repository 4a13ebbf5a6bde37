"""One set of expectations for every StateStore: the in-memory fake and etcd alike."""

from __future__ import annotations

import asyncio

import pytest

from bwvisu_common.errors import DependencyUnavailable
from bwvisu_common.job_facts import JobState
from bwvisu_common.read_model import JobView
from tests.fakes.state_store import InMemoryStateStore


class StateStoreContract:
    @pytest.fixture
    def store(self):  # pragma: no cover - overridden
        raise NotImplementedError

    async def test_saves_jobs_with_the_sequence_only_from_the_expected_one(self, store):
        assert await store.load_jobs() == ({}, 0)
        a = JobView(job_id="a", uid="alice", seq=1)
        assert await store.save_jobs([a], 1, 0)
        b = JobView(job_id="b", uid="bob", state=JobState.RUNNING, seq=2)
        assert not await store.save_jobs([b], 2, 0), "a stale writer must be refused"
        assert await store.save_jobs([b], 2, 1)
        assert await store.load_jobs() == ({"a": a, "b": b}, 2)
        assert await store.get_job("b") == b
        assert await store.get_job("zzz") is None

    async def test_many_jobs_at_once(self, store):
        jobs = [JobView(job_id=f"j{i:04d}", seq=i) for i in range(300)]
        assert await store.save_jobs(jobs, 300, 0)
        loaded, seq = await store.load_jobs()
        assert seq == 300 and len(loaded) == 300 and loaded["j0299"] == jobs[-1]

    async def test_forgets_jobs_only_from_the_expected_sequence_and_keeps_it(self, store):
        jobs = [JobView(job_id=f"j{i:04d}", seq=i) for i in range(1, 251)]
        assert await store.save_jobs(jobs, 250, 0)
        assert not await store.forget_jobs(["j0001"], 249), "a stale projector must be refused"
        gone = [j.job_id for j in jobs[:200]]
        assert await store.forget_jobs([*gone, "never-known"], 250)
        loaded, seq = await store.load_jobs()
        assert seq == 250 and sorted(loaded) == [j.job_id for j in jobs[200:]]
        assert await store.get_job("j0001") is None

    async def test_wipe_removes_the_projection_only(self, store):
        await store.save_jobs([JobView(job_id="a")], 5, 0)
        assert await store.reserve(["gw0/1"], "a")
        await store.put_secret("token/a", b"s3cret", ttl=60)
        await store.wipe_projection()
        assert await store.load_jobs() == ({}, 0)
        assert await store.reservations() == {"gw0/1": "a"}
        assert await store.get_secret("token/a") == b"s3cret"

    async def test_reservations_are_all_or_nothing_and_owned(self, store):
        assert await store.reserve(["gw0/20000", "gw0/20001"], "job1")
        assert not await store.reserve(["gw0/20001", "gw0/20002"], "job2")
        assert await store.reservations("gw0/") == {"gw0/20000": "job1", "gw0/20001": "job1"}
        assert await store.release_job("job2", ["gw0/20000"]) == 0  # not job2's: nothing happens
        assert "gw0/20000" in await store.reservations()
        assert await store.release_job("job1", ["gw0/20000", "gw0/20001"]) == 2
        assert await store.reservations() == {}

    async def test_releasing_a_job_frees_only_what_it_still_holds(self, store):
        assert await store.reserve(["ports/gw0/1", "nodeports/n1/1", "grants/job1"], "job1")
        assert await store.reserve(["ports/gw0/2"], "job2")
        keys = ["ports/gw0/1", "ports/gw0/2", "nodeports/n1/1", "grants/job1", "grants/job1", "ports/gw0/3"]
        assert await store.release_job("job1", keys) == 3, "held, someone else's, twice, never held"
        assert await store.reservations() == {"ports/gw0/2": "job2"}
        assert await store.release_job("job1", keys) == 0

    async def test_a_release_racing_a_new_reservation_never_frees_the_new_hold(self, store):
        for round_ in range(10):
            key = f"ports/gw1/{round_}"
            assert await store.reserve([key], "old")
            freed, taken = await asyncio.gather(store.release_job("old", [key]),
                                                store.reserve([key], "new"))
            assert freed == 1, "the old hold is freed whichever comes first"
            assert await store.reservations(key) == ({key: "new"} if taken else {})

    async def test_concurrent_reservations_of_one_key_have_one_winner(self, store):
        results = await asyncio.gather(*(store.reserve(["gw1/30000"], f"j{i}") for i in range(20)))
        assert results.count(True) == 1

    async def test_secrets_expire_and_can_be_deleted(self, store):
        await store.put_secret("token/x", b"abc", ttl=60)
        assert await store.get_secret("token/x") == b"abc"
        await store.delete_secret("token/x")
        assert await store.get_secret("token/x") is None
        await store.put_secret("token/y", b"abc", ttl=1)
        assert await store.get_secret("token/y") == b"abc"
        # etcd enforces a minimum TTL and checks leases periodically: allow a few seconds.
        for _ in range(50):
            if await store.get_secret("token/y") is None:
                break
            await asyncio.sleep(0.2)
        assert await store.get_secret("token/y") is None

    async def test_revoked_logins_are_remembered_until_their_ttl(self, store):
        assert not await store.login_revoked("sid-a")
        await store.revoke_login("sid-a", ttl=60)
        await store.revoke_login("sid-b", ttl=1)
        assert await store.login_revoked("sid-a") and await store.login_revoked("sid-b")
        assert not await store.login_revoked("sid-c"), "only the revoked ids"
        await store.wipe_projection()
        assert await store.login_revoked("sid-a"), "a rebuilt projection does not forget them"
        for _ in range(50):
            if not await store.login_revoked("sid-b"):
                break
            await asyncio.sleep(0.2)
        assert not await store.login_revoked("sid-b") and await store.login_revoked("sid-a")


    async def test_secret_names_list_what_is_stored_not_what_was_deleted(self, store):
        for name in ("token/a", "session/a", "token/b"):
            await store.put_secret(name, b"v" * 64, ttl=60)
        await store.delete_secret("token/b")
        await store.delete_secret("token/never-stored")  # no error
        assert sorted(await store.secret_names()) == ["session/a", "token/a"]
        assert await store.secret_names("session/") == ["session/a"]


class TestInMemoryStateStore(StateStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryStateStore()


@pytest.mark.integration
class TestEtcdStateStore(StateStoreContract):
    @pytest.fixture
    def store(self, state_store):
        return state_store

    async def test_a_key_that_changes_hands_during_a_release_stays_with_its_new_holder(self, store):
        keys = ["ports/gw0/7", "nodeports/n1/7", "grants/job1"]
        assert await store.reserve(keys, "job1")
        txn, calls = store._txn, []

        async def key_taken_after_the_read(compare, success):
            answer = await txn(compare, success)
            calls.append(compare)
            if len(calls) == 1:  # between the read and the guarded delete, job2 gets a key
                await store._etcd.delete(f"{store._reservations}ports/gw0/7".encode())
                await store._etcd.put(f"{store._reservations}ports/gw0/7".encode(), b"job2")
            return answer

        store._txn = key_taken_after_the_read
        assert await store.release_job("job1", keys) == 2
        assert await store.reservations() == {"ports/gw0/7": "job2"}
        assert len(calls) == 4, "read, refused delete, read again, delete"

    async def test_a_release_cut_short_leaves_the_first_keys_held_for_the_next_attempt(self, store):
        # More keys than one transaction takes: the gateway's port (listed first) must go last.
        keys = ["ports/gw0/7"] + [f"nodeports/n{i}/7" for i in range(130)] + ["grants/job1"]
        assert await store.reserve(keys[:100], "job1") and await store.reserve(keys[100:], "job1")
        release_held = store._release_held

        async def etcd_dies_after_one_chunk(owner, chunk):
            if len(await store.reservations()) < len(keys):
                raise DependencyUnavailable("etcd went away")
            return await release_held(owner, chunk)

        store._release_held = etcd_dies_after_one_chunk
        with pytest.raises(DependencyUnavailable):
            await store.release_job("job1", keys)
        assert "ports/gw0/7" in await store.reservations("ports/"), "the retry still finds the job"
        store._release_held = release_held
        assert await store.release_job("job1", keys) > 0
        assert await store.reservations() == {}

    async def test_deleting_a_secret_also_revokes_its_lease(self, store):
        await store.put_secret("token/z", b"v" * 64, ttl=600)
        kv = await store._etcd.get(f"{store._secrets}token/z".encode())
        assert kv is not None and kv.lease
        await store.delete_secret("token/z")
        # A revoked lease has TTL -1: nothing of the job's secret waits for its expiry.
        assert (await store._etcd.get_lease_info(kv.lease)).TTL == -1
