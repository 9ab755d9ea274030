"""Store drills on Kubernetes: Jobs that run pg_dump, pg_restore and the disaster's DROP.

Each Job runs one POSIX shell script in a PostgreSQL client image, with the store's URL from
the mesh's Secret and the backups on a PersistentVolumeClaim. The scripts print ``MESHSRE-``
lines that the runner reads from the pod's log:

- backup: ``pg_dump -Fc``, then the manifest is read back *from the archive* (row counts of
  every table's data, the audit chain's head), so it describes exactly what the file holds;
- restore: into a fresh database under a temporary name, counted there, then renamed into
  place, so a replica never connects to a half-restored store;
- destroy: ``DROP DATABASE ... WITH (FORCE)``.

The scripts refuse the maintenance databases, and take every path from the environment
(BACKUP_DIR, BACKUP_FILE), so a test can run them against a real PostgreSQL.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from mesh.platform import PlatformError

__all__ = [
    "BACKUP_SCRIPT",
    "DESTROY_SCRIPT",
    "RESTORE_SCRIPT",
    "JobRunner",
    "job_manifest",
    "parse_log",
]

BACKUP_MOUNT = "/backups"
_GUARD = r"""
set -eu
url="${MESH_STORAGE_URL%%\?*}"
query=""
case "$MESH_STORAGE_URL" in *\?*) query="?${MESH_STORAGE_URL#*\?}" ;; esac
db="${url##*/}"
base="${url%/*}"
case "$db" in
  ""|postgres|template0|template1) echo "refusing to touch database '$db'" >&2; exit 1 ;;
esac
admin="$base/postgres$query"
"""

BACKUP_SCRIPT = r"""
set -eu
f="$BACKUP_DIR/$BACKUP_FILE"
pg_dump --format=custom --file="$f.partial" --dbname="$MESH_STORAGE_URL"
mv "$f.partial" "$f"
pg_restore --list "$f" > /dev/null
for t in $(pg_restore --list "$f" | awk '$4 == "TABLE" && $5 == "DATA" {print $7}' | sort); do
  n=$(pg_restore --data-only --table="$t" --file=- "$f" \
      | awk '/^COPY /{on=1; next} /^\\\.$/{on=0} on{n++} END{print n+0}')
  echo "MESHSRE-TABLE $t $n"
done
echo "MESHSRE-HEAD $(pg_restore --data-only --table=audit --file=- "$f" \
  | awk -F '\t' 'BEGIN{m=-1}
                 /^COPY /{on=1; cols=$0; sub(/^[^(]*\(/, "", cols); sub(/\).*/, "", cols)
                          n=split(cols, c, ", "); for (i=1; i<=n; i++) if (c[i]=="hash") hc=i
                          next}
                 /^\\\.$/{on=0}
                 on && $1+0 > m {m=$1+0; h=$hc} END{if (m >= 0) print m, h}')"
echo "MESHSRE-FILE $(wc -c < "$f" | tr -d ' ') $(sha256sum "$f" | cut -d ' ' -f 1)"
echo "MESHSRE-DONE"
"""

RESTORE_SCRIPT = (
    _GUARD
    + r"""
f="$BACKUP_DIR/$BACKUP_FILE"
test -s "$f" || { echo "no backup at $f" >&2; exit 1; }
tmp="${db}_restoring"
fresh="$base/$tmp$query"
psql "$admin" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$tmp\" WITH (FORCE)" \
  -qc "CREATE DATABASE \"$tmp\""
pg_restore --no-owner --exit-on-error --dbname="$fresh" "$f"
for t in $(psql "$fresh" -Atc "SELECT tablename FROM pg_tables WHERE schemaname = 'public'
                               ORDER BY tablename"); do
  echo "MESHSRE-TABLE $t $(psql "$fresh" -Atc "SELECT count(*) FROM \"$t\"")"
done
echo "MESHSRE-HEAD $(psql "$fresh" -AtF ' ' \
  -c 'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1')"
psql "$admin" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
  -qc "ALTER DATABASE \"$tmp\" RENAME TO \"$db\""
echo "MESHSRE-DONE"
"""
)

DESTROY_SCRIPT = (
    _GUARD
    + r"""
psql "$admin" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
echo "MESHSRE-DONE"
"""
)

_SCRIPTS = {"backup": BACKUP_SCRIPT, "restore": RESTORE_SCRIPT, "destroy": DESTROY_SCRIPT}


def parse_log(text: str) -> dict[str, Any]:
    """The manifest in a drill Job's log; raises PlatformError when the script did not finish."""
    tables: dict[str, int] = {}
    out: dict[str, Any] = {"tables": tables, "audit_last_seq": None, "audit_head": None}
    done = False
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        parts = rest.split()
        if word == "MESHSRE-TABLE" and len(parts) == 2:
            tables[parts[0]] = int(parts[1])
        elif word == "MESHSRE-HEAD" and len(parts) == 2:
            out["audit_last_seq"], out["audit_head"] = int(parts[0]), parts[1]
        elif word == "MESHSRE-FILE" and len(parts) == 2:
            out["size_bytes"], out["sha256"] = int(parts[0]), parts[1]
        elif word == "MESHSRE-DONE":
            done = True
    if not done:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise PlatformError(f"kubernetes: the drill job did not finish: {tail}")
    return out


def job_manifest(
    kind: str, name: str, settings: Any, backup_file: str, timeout: float
) -> dict[str, Any]:
    """A Job running the kind's script once (no retries: a drill step must not repeat)."""
    labels = {"app.kubernetes.io/name": "meshsre-drill", "meshsre.dev/drill": kind}
    container = {
        "name": kind,
        "image": settings.tools_image,
        "command": ["sh", "-c", _SCRIPTS[kind]],
        "env": [
            {
                "name": "MESH_STORAGE_URL",
                "valueFrom": {
                    "secretKeyRef": {"name": settings.store_secret, "key": "storage-url"}
                },
            },
            {"name": "BACKUP_DIR", "value": BACKUP_MOUNT},
            {"name": "BACKUP_FILE", "value": backup_file},
            {"name": "PGCONNECT_TIMEOUT", "value": "5"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "volumeMounts": [
            {"name": "backups", "mountPath": BACKUP_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(30, int(timeout)),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    # uid 70 is postgres in the official alpine images: restricted PSS holds.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 70,
                        "runAsGroup": 70,
                        "fsGroup": 70,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "backups",
                            "persistentVolumeClaim": {"claimName": settings.backup_claim},
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


class JobRunner:
    def __init__(self, core: Any, batch: Any, settings: Any, poll: float = 1.0) -> None:
        self.core, self.batch, self.settings, self.poll = core, batch, settings, poll

    def run(self, kind: str, backup_file: str, timeout: float = 600.0) -> dict[str, Any]:
        ns = self.settings.namespace
        name = f"meshsre-{kind}-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
        started = time.perf_counter()
        self.batch.create_namespaced_job(
            ns, job_manifest(kind, name, self.settings, backup_file, timeout)
        )
        deadline = time.monotonic() + timeout
        while True:
            status = self.batch.read_namespaced_job_status(name, ns).status
            if status is not None and (status.succeeded or 0) >= 1:
                break
            if status is not None and (status.failed or 0) >= 1:
                raise PlatformError(f"kubernetes: job {name} failed: {self._log(name)[-400:]}")
            if time.monotonic() > deadline:
                self.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
                raise PlatformError(f"kubernetes: job {name} did not finish in {timeout:.0f}s")
            time.sleep(self.poll)
        result = parse_log(self._log(name))
        return {"job": name, "duration_seconds": round(time.perf_counter() - started, 4), **result}

    def _log(self, job: str) -> str:
        ns = self.settings.namespace
        pods = self.core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items
        return "".join(self.core.read_namespaced_pod_log(p.metadata.name, ns) for p in pods)

    def _location(self, backup_file: str) -> str:
        return f"pvc://{self.settings.backup_claim}/{backup_file}"

    def backup(self, name: str) -> dict[str, Any]:
        stem = name.rsplit(".", 1)[0] or "store"
        backup_file = f"{stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.dump"
        result = self.run("backup", backup_file)
        return {
            "backend": "postgresql",
            "location": self._location(backup_file),
            "integrity": "pg_restore --list ok",
            "finished_at": time.time(),
            **result,
        }

    def restore(self, src: str, timeout: float = 600.0) -> dict[str, Any]:
        prefix = f"pvc://{self.settings.backup_claim}/"
        if "://" in src and not src.startswith(prefix):
            raise PlatformError(f"kubernetes: {src} is not on the backup volume ({prefix}...)")
        backup_file = src.removeprefix(prefix).rsplit("/", 1)[-1]
        result = self.run("restore", backup_file, max(timeout, 60.0))
        return {
            "backend": "postgresql",
            "source": self._location(backup_file),
            "integrity": "pg_restore ok",
            **result,
        }

    def destroy(self) -> dict[str, Any]:
        result = self.run("destroy", "-")
        return {
            "backend": "postgresql",
            "removed": ["database"],
            "duration_seconds": result["duration_seconds"],
            "job": result["job"],
        }
