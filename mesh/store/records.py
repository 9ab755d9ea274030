"""Store operations as plain transaction functions over a DB-API cursor (``?`` placeholders).

Every write that changes state appends its audit entry in the same transaction, so a state
change and its audit record commit together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from mesh import audit
from mesh.telemetry import TRUST_BUCKETS

__all__ = [
    "AGENT_COLUMNS",
    "AUDIT_HEAD_SQL",
    "append_audit",
    "audit_head",
    "ensure_genesis",
    "sign_tail",
]

AGENT_COLUMNS = "did, public_key, name, sponsor, capabilities, policy, trust_score, created_at"


def agent_row(row: tuple[Any, ...]) -> dict[str, Any]:
    did, public_key, name, sponsor, caps, policy, trust, created = row
    return {
        "did": did,
        "public_key": public_key,
        "name": name,
        "sponsor": sponsor,
        "capabilities": json.loads(caps),
        "policy": policy,
        "trust_score": int(trust),
        "created_at": float(created),
    }


AUDIT_HEAD_SQL = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"


def audit_head(row: tuple[Any, ...] | None) -> tuple[int, str]:
    """The log's head (seq, hash) from AUDIT_HEAD_SQL's row: before genesis, the seed."""
    return (-1, audit.GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


def append_audit(
    cur: Any, actor: str, action: str, subject: str, data: dict[str, Any], now: float
) -> audit.Entry:
    now = float(now)  # the column is a double: hash exactly what will be read back
    # A driver's write cursor remembers the head for the rest of its transaction: the write
    # lock is held, so no one else can append, and a batch of writes reads it once.
    head = getattr(cur, "audit_head", None)
    if head is None:
        head = audit_head(cur.execute(AUDIT_HEAD_SQL).fetchone())
    seq, prev = head[0] + 1, head[1]
    text = audit.canonical(data)
    digest = audit.entry_hash(seq, now, actor, action, subject, text, prev)
    cur.execute(
        "INSERT INTO audit (seq, ts, actor, action, subject, data, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, now, actor, action, subject, text, prev, digest),
    )
    if hasattr(cur, "audit_head"):
        cur.audit_head = (seq, digest)
    # Signed by sign_tail when the batch ends. Without a signer (a store opened by a tool,
    # not a replica) the entry stays unsigned, and verifies only before signing began.
    if getattr(cur, "audit_signer", None) is not None:
        cur.audit_unsigned = (seq, digest)
    return audit.Entry(seq, now, actor, action, subject, text, prev, digest)


def sign_tail(cur: Any) -> None:
    """Signs the last entry a write batch appended, which covers the batch's other entries
    through the chain: one signature a batch instead of one an entry. A registration cost
    about 5% less CPU (py-spy under `make bench`: the signature was 4.8% of it) and a replica
    verifies one signature of another's batch, not one per entry. Drivers call it before
    they commit."""
    tail = getattr(cur, "audit_unsigned", None)
    if tail is not None:
        cur.audit_unsigned = None
        seq, digest = tail
        cur.execute("UPDATE audit SET signature = ? WHERE seq = ?", (cur.audit_signer(digest), seq))


def ensure_genesis(cur: Any) -> None:
    if cur.execute("SELECT 1 FROM audit WHERE seq = 0").fetchone() is None:
        append_audit(cur, "mesh", "genesis", "", {"version": 1}, time.time())


def meta_setdefault(key: str, value: str) -> Callable[[Any], str]:
    def work(cur: Any) -> str:
        cur.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, value),
        )
        return str(cur.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    return work


def create_agent(record: dict[str, Any], actor: str) -> Callable[[Any], audit.Entry]:
    def work(cur: Any) -> audit.Entry:
        # A duplicate fails the INSERT (a Conflict once translated) rather than being checked
        # here: on PostgreSQL a batch's statements are pipelined, and checking would wait.
        cur.execute(
            f"INSERT INTO agents ({AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record["did"],
                record["public_key"],
                record["name"],
                record["sponsor"],
                json.dumps(record["capabilities"]),
                record["policy"],
                record["trust_score"],
                record["created_at"],
            ),
        )
        summary = {k: record[k] for k in ("name", "sponsor", "capabilities", "policy")}
        return append_audit(
            cur, actor, "agent.registered", record["did"], summary, record["created_at"]
        )

    return work


def get_agent(did: str) -> Callable[[Any], dict[str, Any] | None]:
    def work(cur: Any) -> dict[str, Any] | None:
        row = cur.execute(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE did = ? AND deregistered_at IS NULL",
            (did,),
        ).fetchone()
        return None if row is None else agent_row(row)

    return work


def list_agents(
    capability: str | None, limit: int, cursor: str | None
) -> Callable[[Any], list[dict[str, Any]]]:
    def work(cur: Any) -> list[dict[str, Any]]:
        sql = f"SELECT {AGENT_COLUMNS} FROM agents WHERE did > ? AND deregistered_at IS NULL"
        params: list[Any] = [cursor or ""]
        if capability:
            sql += " AND capabilities LIKE ?"
            params.append(f"%{json.dumps(capability)}%")
        sql += " ORDER BY did LIMIT ?"
        params.append(limit)
        return [agent_row(r) for r in cur.execute(sql, params).fetchall()]

    return work


def reregister_agent(
    record: dict[str, Any], proof_at: int, actor: str
) -> Callable[[Any], tuple[str, Any]]:
    """Registers again an agent that was deregistered, keeping its trust score: its history
    (penalties included) belongs to the key. ("registered", trust), ("active", None) when it
    was never deregistered, or ("stale", when) when the proof predates the deregistration (a
    registration replayed after it)."""

    def work(cur: Any) -> tuple[str, Any]:
        did = record["did"]
        row = cur.execute(
            "SELECT trust_score, deregistered_at FROM agents WHERE did = ? AND public_key = ?",
            (did, record["public_key"]),
        ).fetchone()
        if row is None or row[1] is None:
            return "active", None
        trust, gone = int(row[0]), float(row[1])
        if proof_at <= gone:
            return "stale", gone
        cur.execute(
            "UPDATE agents SET name = ?, sponsor = ?, capabilities = ?, policy = ?,"
            " created_at = ?, deregistered_at = NULL WHERE did = ?",
            (
                record["name"],
                record["sponsor"],
                json.dumps(record["capabilities"]),
                record["policy"],
                record["created_at"],
                did,
            ),
        )
        summary = {k: record[k] for k in ("name", "sponsor", "capabilities", "policy")}
        summary["trust_score"] = trust  # kept from before the deregistration
        append_audit(cur, actor, "agent.registered", did, summary, record["created_at"])
        return "registered", trust

    return work


# Why a deregistration revokes the agent's credentials (RFC 5280's reason for it).
DEREGISTERED_REASON = "cessation_of_operation"


def deregister_agent(
    did: str, actor: str, now: float, notify: bool
) -> Callable[[Any], list[str] | None]:
    """Marks the agent deregistered and revokes its live credentials, in one transaction;
    the ids revoked, or None when no such agent is registered. The row stays, so that the
    agent's trust survives a later registration of the same key."""

    def work(cur: Any) -> list[str] | None:
        cur.execute(
            "UPDATE agents SET deregistered_at = ? WHERE did = ? AND deregistered_at IS NULL",
            (now, did),
        )
        if cur.rowcount == 0:
            return None
        rows = cur.execute(
            "SELECT jti FROM credentials WHERE did = ? AND expires_at > ?"
            " AND jti NOT IN (SELECT jti FROM revocations) ORDER BY jti",
            (did, now),
        ).fetchall()
        revoked = [str(r[0]) for r in rows]
        for jti in revoked:
            _revoke(cur, jti, DEREGISTERED_REASON, now, notify)
        append_audit(cur, actor, "agent.deregistered", did, {"revoked": revoked}, now)
        return revoked

    return work


def change_trust(
    did: str,
    actor: str,
    now: float,
    *,
    delta: int = 0,
    score: int | None = None,
    reason: str = "",
    rule: str = "",
) -> Callable[[Any], int | None]:
    """Set the score, or move it by ``delta``, clamped to 0..1000; audited with its reason."""

    def work(cur: Any) -> int | None:
        row = cur.execute(
            "SELECT trust_score FROM agents WHERE did = ? AND deregistered_at IS NULL", (did,)
        ).fetchone()
        if row is None:
            return None
        old = int(row[0])
        new = max(0, min(1000, score if score is not None else old + delta))
        cur.execute("UPDATE agents SET trust_score = ? WHERE did = ?", (new, did))
        data: dict[str, Any] = {"from": old, "to": new, "reason": reason}
        if rule:
            data["rule"] = rule
        action = "policy.violation" if rule else "trust.changed"
        append_audit(cur, actor, action, did, data, now)
        return new

    return work


def create_challenge(
    challenge_id: str, did: str, nonce: str, expires_at: float, now: float
) -> Callable[[Any], None]:
    def work(cur: Any) -> None:
        # Expired challenges are swept opportunistically: no background job needed.
        cur.execute("DELETE FROM challenges WHERE expires_at < ?", (now - 300,))
        cur.execute(
            "INSERT INTO challenges (id, did, nonce, expires_at) VALUES (?, ?, ?, ?)",
            (challenge_id, did, nonce, expires_at),
        )

    return work


def get_challenge(challenge_id: str) -> Callable[[Any], tuple[Any, ...] | None]:
    def work(cur: Any) -> tuple[Any, ...] | None:
        row = cur.execute(
            "SELECT did, nonce, expires_at, used_at FROM challenges WHERE id = ?",
            (challenge_id,),
        ).fetchone()
        return None if row is None else tuple(row)

    return work


def consume_challenge(challenge_id: str, now: float) -> Callable[[Any], bool]:
    """Marks the challenge used; False when another request used it first (a replay)."""

    def work(cur: Any) -> bool:
        cur.execute(
            "UPDATE challenges SET used_at = ? WHERE id = ? AND used_at IS NULL",
            (now, challenge_id),
        )
        return bool(cur.rowcount == 1)

    return work


def insert_credential(
    jti: str, did: str, issued_at: float, expires_at: float, actor: str
) -> Callable[[Any], None]:
    def work(cur: Any) -> None:
        cur.execute(
            "INSERT INTO credentials (jti, did, issued_at, expires_at) VALUES (?, ?, ?, ?)",
            (jti, did, issued_at, expires_at),
        )
        append_audit(
            cur, actor, "credential.issued", did, {"jti": jti, "expires_at": expires_at}, issued_at
        )

    return work


def get_credential(jti: str) -> Callable[[Any], tuple[Any, ...] | None]:
    def work(cur: Any) -> tuple[Any, ...] | None:
        row = cur.execute(
            "SELECT did, issued_at, expires_at FROM credentials WHERE jti = ?", (jti,)
        ).fetchone()
        return None if row is None else tuple(row)

    return work


def revoke_credential(
    jti: str, did: str, reason: str, actor: str, now: float, notify: bool
) -> Callable[[Any], tuple[int, float]]:
    """Records the revocation; on PostgreSQL also NOTIFYs, which is delivered on commit."""

    def work(cur: Any) -> tuple[int, float]:
        row = cur.execute(
            "SELECT seq, revoked_at FROM revocations WHERE jti = ?", (jti,)
        ).fetchone()
        if row is not None:
            return int(row[0]), float(row[1])
        seq = _revoke(cur, jti, reason, now, notify)
        append_audit(cur, actor, "credential.revoked", did, {"jti": jti, "reason": reason}, now)
        return seq, now

    return work


def _revoke(cur: Any, jti: str, reason: str, now: float, notify: bool) -> int:
    seq = int(
        cur.execute(
            "INSERT INTO revocations (jti, reason, revoked_at) VALUES (?, ?, ?) RETURNING seq",
            (jti, reason, now),
        ).fetchone()[0]
    )
    if notify:
        payload = json.dumps({"seq": seq, "jti": jti, "revoked_at": now})
        cur.execute("SELECT pg_notify('mesh_revocations', ?)", (payload,))
    return seq


def revocations_after(seq: int) -> Callable[[Any], list[tuple[int, str, float]]]:
    def work(cur: Any) -> list[tuple[int, str, float]]:
        rows = cur.execute(
            "SELECT seq, jti, revoked_at FROM revocations WHERE seq > ? ORDER BY seq LIMIT 10000",
            (seq,),
        ).fetchall()
        return [(int(s), j, float(t)) for s, j, t in rows]

    return work


# Audit actions that change an agent record (a registration adds one; nothing caches misses).
AGENT_CHANGES = ("agent.deregistered", "trust.changed", "policy.violation")


def agent_changes(
    since: tuple[int, str] | None,
) -> Callable[[Any], tuple[tuple[int, str], list[str] | None]]:
    """The log's head (seq, hash) and the agents changed after ``since``; None instead of the
    agents when the log no longer holds ``since`` as it was (a restore: anything may differ)."""

    def work(cur: Any) -> tuple[tuple[int, str], list[str] | None]:
        head = audit_head(cur.execute(AUDIT_HEAD_SQL).fetchone())
        if since is None or head == since:
            return head, []  # one statement a poll while nothing is written
        kept = cur.execute("SELECT hash FROM audit WHERE seq = ?", (since[0],)).fetchone()
        if kept is None or kept[0] != since[1]:
            return head, None
        rows = cur.execute(
            "SELECT DISTINCT subject FROM audit WHERE seq > ? AND seq <= ?"
            f" AND action IN ({', '.join('?' * len(AGENT_CHANGES))})",
            (since[0], head[0], *AGENT_CHANGES),
        ).fetchall()
        return head, [str(r[0]) for r in rows]

    return work


def audit_after(after: int, limit: int) -> Callable[[Any], list[audit.Entry]]:
    def work(cur: Any) -> list[audit.Entry]:
        rows = cur.execute(
            "SELECT seq, ts, actor, action, subject, data, prev_hash, hash, signature"
            " FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [audit.Entry(int(r[0]), float(r[1]), *r[2:]) for r in rows]

    return work


def stats(cur: Any) -> dict[str, Any]:
    """Registry size, trust distribution per tier and newest backup, aggregated in SQL."""
    tiers = ", ".join(
        f"SUM(CASE WHEN trust_score <= {int(b)} THEN 1 ELSE 0 END)" for b in TRUST_BUCKETS
    )
    row = cur.execute(
        f"SELECT COUNT(*), SUM(trust_score), {tiers} FROM agents WHERE deregistered_at IS NULL"
    ).fetchone()
    backup = cur.execute("SELECT MAX(finished_at) FROM backups").fetchone()[0]
    return {
        "count": int(row[0]),
        "sum": float(row[1] or 0),
        "cumulative": [int(v or 0) for v in row[2:]],
        "last_backup": float(backup or 0.0),
    }


def claim_nonce(key: str, expires_at: float) -> Callable[[Any], None]:
    """Records a signed request's nonce; a Conflict (the key is there) means a replay."""

    def work(cur: Any) -> None:
        cur.execute("INSERT INTO request_nonces (id, expires_at) VALUES (?, ?)", (key, expires_at))

    return work


def sweep_nonces(now: float) -> Callable[[Any], None]:
    def work(cur: Any) -> None:
        cur.execute("DELETE FROM request_nonces WHERE expires_at < ?", (now,))

    return work


def ping(cur: Any) -> None:
    cur.execute("SELECT 1").fetchone()
