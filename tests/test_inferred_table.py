"""tracing.analysis._Table: the decoded events with the inferred switches inserted, read by rows
without a copy of the table. Checked against the table materialised with np.insert (what the
analysis built before issue 25), on simulated traces with switches taken out (so that switches
are inferred, some between two of our threads: a row listed twice), for every way it is read:
columns at rows in any order and ascending with repeats, rows() of decoded rows with and without
their locations, strings, and the backward scan for a CPU's last other task."""
import numpy as np
import pytest

from tests.test_analysis_identity import simulate
from tracing import analysis as A
from tracing import parse as P

COLS = ("ts", "cpu", "kind", "tid", "tgid", "a", "b", "c")


def thinned(seed: int, frac: float = 0.3) -> P.Events:
    rng = np.random.default_rng(seed)
    ev = simulate(rng, n_cpus=3, n_ours=4, n_others=3, steps=600)
    sw = np.flatnonzero(ev.kind == P.K_SWITCH)
    drop = rng.choice(sw, size=int(len(sw) * frac), replace=False)
    return ev.take(np.setdiff1d(np.arange(len(ev)), drop))


def materialised(table: "A._Table") -> dict:
    """Every column of the table as the analysis used to build it: np.insert of the inserted rows."""
    pos = table.pos
    return {c: np.insert(getattr(table.ev, c), pos, table.ins[c]) for c in COLS}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_table_reads_as_the_inserted_copy(seed):
    ev = thinned(seed)
    ours = np.array([100, 101, 102, 103])
    table, inf = A._infer_switches(ev, ours)
    assert len(inf.row) > 3 and len(table) == len(ev) + len(inf.row)
    full = materialised(table)
    assert all(full["kind"][inf.row] == P.K_SWITCH) and all(full["c"][inf.row] == A.INFERRED)
    rng = np.random.default_rng(seed)
    n = len(table)
    every = np.arange(n)
    shuffled = rng.permutation(n)
    # ascending with repeats, the inserted rows among them (a switch between two of ours: twice)
    repeated = np.sort(np.concatenate((rng.choice(n, n // 2), inf.row, inf.row[: len(inf.row) // 2])))
    for rows, asc in ((every, True), (every, False), (shuffled, False), (repeated, True), (repeated, False),
                      (inf.row, True), (np.zeros(0, dtype=np.int64), True)):
        loc = table.locate(rows, ascending=asc)
        for c in COLS:
            got = table.col(c, loc=loc)
            assert got.dtype == full[c].dtype and np.array_equal(got, full[c][rows]), (c, asc)
    # rows(): decoded rows (sorted) to table rows, with some or all inserted ones, and located
    dec = np.sort(rng.choice(len(ev), len(ev) // 3, replace=False))
    mask = rng.random(len(inf.row)) < 0.5
    new_of_dec = np.setdiff1d(every, inf.row)  # table row of each decoded row
    for m_ in (None, mask):
        want = np.sort(np.concatenate((new_of_dec[dec], inf.row if m_ is None else inf.row[m_])))
        assert np.array_equal(table.rows(dec, m_), want)
        got, loc = table.rows(dec, m_, loc=True)
        assert np.array_equal(got, want)
        for c in COLS:
            assert np.array_equal(table.col(c, loc=loc), full[c][want])
    # strings: decoded rows keep theirs; an inserted switch names its tasks by their comms
    for i in rng.choice(n, 200):
        j = np.searchsorted(inf.row, i)
        if j < len(inf.row) and inf.row[j] == i:
            assert table.sa(i) == table._comm(int(full["tid"][i])) and table.sb(i) == table._comm(int(full["a"][i]))
        else:
            d = int(i - j)
            assert (table.sa(i), table.sb(i)) == (ev.sa(d), ev.sb(d))
    # a CPU's last row before `row` with another current task: brute force over the copy
    for row in rng.choice(n, 100):
        cpu, tid = int(full["cpu"][row]), int(full["tid"][row])
        cand = np.flatnonzero((full["cpu"][:row] == cpu) & (full["tid"][:row] != tid))
        assert table.last_other(int(row), cpu, tid) == (int(cand[-1]) if len(cand) else -1)


def test_table_without_inferred_switches_is_the_decoded_table():
    ev = simulate(np.random.default_rng(7), steps=300)
    table, inf = A._infer_switches(ev, np.array([100]))
    assert len(inf.row) == 0 and len(table) == len(ev)
    rows = np.random.default_rng(0).permutation(len(ev))
    for c in COLS:
        assert np.array_equal(table.col(c, rows), getattr(ev, c)[rows])
    some = np.sort(rows[:10])
    assert table.rows(some) is some  # (no copy)
    assert table.last_other(len(ev) - 1, int(ev.cpu[-1]), -5) == int(np.flatnonzero(ev.cpu[:-1] == ev.cpu[-1])[-1])
