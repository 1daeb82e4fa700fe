"""Service replicas: two real ``tagindex serve`` processes over one index directory and one real
Postgres (started here in a temporary directory), spoken to over HTTP."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from service_support import KEY
from test_service_http import Server, free_port

from tagindex.store import read_manifest

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'tagindex[postgres]')")


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away Postgres server: initdb + pg_ctl in a temp dir, stopped and removed after the module."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("Postgres server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    # Postgres refuses to run as root: run it as the `postgres` system user then, in a directory of its
    # own (pytest's temp dirs are private to the user running the tests).
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start Postgres as another user")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="tagindex-pg-"))
    if run_as:
        shutil.chown(root, "postgres")
    data = root / "data"
    user = "postgres" if run_as else getpass.getuser()
    port = free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*run_as, *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed: {done.stderr.strip() or done.stdout.strip()}")

    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user)
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clean_feedback(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS feedback")
    return postgres_url


def test_postgres_store_behaves_like_the_sqlite_store(clean_feedback: str, tmp_path: Path) -> None:
    from tagindex.service.feedback import FeedbackRecord, FeedbackStore
    from tagindex.service.feedback_pg import PostgresFeedbackStore, open_feedback_store

    from tagindex.errors import InputError

    def judgements() -> list[FeedbackRecord]:
        return [
            FeedbackRecord("p1", "Silver locket", "t1", "accept", attributes={"colour": "silver"}, score=0.5),
            FeedbackRecord("p1", "Silver locket", "t2", "reject", user="m1"),
            FeedbackRecord("p2", "Oak table", "t3", "add", comment="obvious"),
            FeedbackRecord("p1", "Silver locket", "t2", "accept"),  # a later judgement wins the export
        ]

    stores = [open_feedback_store(clean_feedback), open_feedback_store(tmp_path / "fb.sqlite3")]
    assert isinstance(stores[0], PostgresFeedbackStore) and type(stores[1]) is FeedbackStore
    second_replica = open_feedback_store(clean_feedback)
    try:
        out = []
        for store in stores:
            store.add(judgements()[:2])
            store.add(judgements()[2:])
            store.ping()
            out.append(
                (
                    store.count(),
                    [(r.product_id, r.tag, r.action, r.attributes, r.user) for r in store.records(limit=10)],
                    [r.tag for r in store.records(product_id="p1", after_id=1)],
                    store.export_products(),
                )
            )
        assert out[0] == out[1]
        assert out[0][3][0]["tags"] == ["t1", "t2"] and out[0][3][0]["rejected"] == []
        assert second_replica.count() == 4  # another process's connection sees the committed rows
        with pytest.raises(ValueError, match="action"):
            stores[0].add([FeedbackRecord("p", "t", "x", "maybe")])
        assert second_replica.count() == 4
    finally:
        for store in (*stores, second_replica):
            store.close()
    with pytest.raises(InputError, match="unknown scheme"):
        open_feedback_store("mysql://x/y")
    with pytest.raises(ConnectionError, match="cannot connect"):
        open_feedback_store(f"postgresql://nobody@127.0.0.1:{free_port()}/none")


def _wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not true within {seconds} s")


@pytest.mark.slow
def test_two_replicas_share_vocabulary_changes_and_feedback(
    clean_feedback: str, index_dir: Path, sample_products: list[dict], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TAGINDEX_FEEDBACK_URL", clean_feedback)
    monkeypatch.setenv("TAGINDEX_INDEX_POLL_SECONDS", "0.5")
    a = Server(index_dir, tmp_path / "a.log")
    try:
        b = Server(index_dir, tmp_path / "b.log")
    except BaseException:
        a.stop()
        raise
    try:
        with httpx.Client(base_url=a.url, timeout=60) as ha, httpx.Client(base_url=b.url, timeout=60) as hb:
            n = ha.get("/v1/info").json()["index"]["n_tags"]
            new = {"id": "custom_Lockets", "name": "Lockets", "parent": "64010100_Jewellery"}
            assert ha.post("/v1/tags", json={"tags": [new]}, headers=KEY).status_code == 201

            def b_serves_lockets() -> bool:
                hits = hb.post("/v1/tags/similar", json={"text": "lockets", "top_k": 1}).json()["tags"]
                return bool(hits) and hits[0]["tag"] == "custom_Lockets"

            _wait_for(b_serves_lockets)  # "within a few seconds": 0.5 s polling plus one index load
            assert hb.get("/v1/tags/custom_Lockets").status_code == 200
            # B retires it (after catching up under the shared lock); A stops serving it.
            assert hb.delete("/v1/tags/custom_Lockets", headers=KEY).status_code == 200
            _wait_for(lambda: ha.get("/v1/tags/custom_Lockets").status_code == 404)
            # Both replicas change the vocabulary at the same moment: neither change is lost.
            one = {"id": "custom_A", "name": "Anklets", "parent": "64010100_Jewellery"}
            two = {"id": "custom_B", "name": "Brooches", "parent": "64010100_Jewellery"}
            with ThreadPoolExecutor(2) as pool:
                posted = pool.map(
                    lambda pair: pair[0].post("/v1/tags", json={"tags": [pair[1]]}, headers=KEY).status_code,
                    [(ha, one), (hb, two)],
                )
                assert list(posted) == [201, 201]

            def serves_both(http: httpx.Client) -> bool:
                return bool(http.get("/v1/info").json()["index"]["n_tags"] == n + 2)

            _wait_for(lambda: serves_both(ha) and serves_both(hb))
            saved = read_manifest(index_dir, "tagindex")["n_tags"]  # the live version's manifest
            assert saved == n + 2
            fb = {"product": sample_products[0], "judgements": [{"tag": "custom_A", "action": "add"}]}
            assert ha.post("/v1/feedback", json=fb, headers=KEY).status_code == 201
            rows = hb.get("/v1/feedback", headers=KEY).json()["rows"]
            assert [(r["product_id"], r["tag"], r["action"]) for r in rows] == [
                (sample_products[0]["id"], "custom_A", "add")
            ]
            assert hb.get("/readyz").status_code == 200
    finally:
        assert a.stop() & b.stop()
