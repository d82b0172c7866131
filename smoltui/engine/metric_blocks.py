"""The block summaries of the run database's metrics, refreshed at each flush, and the downsampling that reads them.

A block is `block_steps` consecutive steps of one metric, summarised in the `metric_blocks` table (its schema is
in runstore) as min, max, sum and count, so that downsampling a long series reads blocks instead of every point.
"""

from __future__ import annotations

import json
import sqlite3

BLOCK_ROWS = 64  # ~sqrt(1M points / 200 buckets): balances block rows read against raw rows at bucket edges

_REFRESH_BLOCK = """
INSERT OR REPLACE INTO metric_blocks
SELECT name_id, ?2, min(step), max(step), min(value), max(value), sum(value), count(value)
FROM metrics WHERE name_id = ?1 AND step BETWEEN ?2 * ?3 AND ?2 * ?3 + ?3 - 1
GROUP BY name_id
"""

# Buckets are equal step ranges from :start. Blocks that lie inside one bucket contribute their summary; the
# few blocks that straddle a bucket edge or the range ends (:edges) contribute their raw rows.
_DOWNSAMPLE = """
WITH parts (bucket, first_step, last_step, lo, hi, total, n) AS (
    SELECT (first_step - :start) / :width, first_step, last_step, min, max, sum, count
    FROM metric_blocks
    WHERE name_id = :id AND block BETWEEN :first_block AND :last_block
      AND block NOT IN (SELECT value FROM json_each(:edges))
    UNION ALL
    SELECT (m.step - :start) / :width, m.step, m.step, m.value, m.value, m.value, m.value IS NOT NULL
    FROM json_each(:edges) AS e CROSS JOIN metrics AS m  -- CROSS JOIN keeps the edge list as the outer loop
      ON m.name_id = :id
     AND m.step BETWEEN max(:start, e.value * :block_steps) AND min(:end, e.value * :block_steps + :block_steps - 1)
),
buckets AS (
    SELECT min(first_step) AS first_step, max(last_step) AS last_step, min(lo) AS lo, max(hi) AS hi,
           sum(total) / sum(n) AS mean
    FROM parts GROUP BY bucket
)
SELECT b.first_step, b.last_step, b.lo, b.hi, b.mean, m.value
FROM buckets AS b JOIN metrics AS m ON m.name_id = :id AND m.step = b.last_step
ORDER BY b.first_step
"""


def refresh_blocks(
    conn: sqlite3.Connection,
    metrics: dict[str, tuple[int, int | None]],
    rows: list[tuple[str, int, float, float]],
) -> dict[str, tuple[int, int | None]]:
    """Refresh the blocks that the just inserted `rows` touch, inside the writer's transaction.

    A metric's block size is fixed when its second step arrives: BLOCK_ROWS points at the spacing of its
    first two steps (a metric logged every 10 steps gets 640-step blocks), so downsampling stays fast
    whatever the logging interval. `metrics` holds the (id, block_steps) of every name in `rows`; returns
    them with the block sizes fixed by this call.
    """
    known = dict(metrics)
    touched = set()
    for name, (name_id, block_steps) in metrics.items():
        if block_steps is None:
            first_two = conn.execute(
                "SELECT step FROM metrics WHERE name_id = ? ORDER BY step LIMIT 2", (name_id,)
            ).fetchall()
            if len(first_two) < 2:
                continue
            block_steps = BLOCK_ROWS * (first_two[1][0] - first_two[0][0])
            conn.execute("UPDATE metric_names SET block_steps = ? WHERE id = ?", (block_steps, name_id))
            known[name] = (name_id, block_steps)
            steps = conn.execute("SELECT step FROM metrics WHERE name_id = ?", (name_id,))  # this batch + 1 step
            touched.update((name_id, step // block_steps, block_steps) for (step,) in steps)
    for name, step, _, _ in rows:
        name_id, block_steps = known[name]
        if block_steps is not None:
            touched.add((name_id, step // block_steps, block_steps))
    conn.executemany(_REFRESH_BLOCK, touched)
    return known


def downsample(
    conn: sqlite3.Connection, name_id: int, block_steps: int | None, points: int, lo: int, hi: int
) -> list[tuple]:
    """(first_step, last_step, min, max, mean, last value) of at most `points` buckets over steps lo..hi.

    The buckets are equal step ranges over the steps that hold data in lo..hi; empty ones are left out, and
    NaN reads as NULL. Reads block summaries plus the raw rows of the blocks cut by a bucket edge: about
    length / BLOCK_ROWS + points x BLOCK_ROWS rows. Run it inside one read transaction, so that the block
    size, the bounds and the blocks agree.
    """
    block_steps = block_steps or BLOCK_ROWS  # None: a single step so far, and no blocks
    ((start, end),) = conn.execute(
        "SELECT (SELECT min(step) FROM metrics WHERE name_id = ?1 AND step BETWEEN ?2 AND ?3),"
        " (SELECT max(step) FROM metrics WHERE name_id = ?1 AND step BETWEEN ?2 AND ?3)",
        (name_id, lo, hi),
    ).fetchall()
    if start is None:
        return []
    width = -(-(end - start + 1) // points)
    count = -(-(end - start + 1) // width)
    edges = {start // block_steps, end // block_steps}
    edges.update((start + k * width) // block_steps for k in range(1, count))
    return conn.execute(
        _DOWNSAMPLE,
        {
            "id": name_id,
            "start": start,
            "end": end,
            "width": width,
            "edges": json.dumps(sorted(edges)),
            "block_steps": block_steps,
            "first_block": start // block_steps,
            "last_block": end // block_steps,
        },
    ).fetchall()
