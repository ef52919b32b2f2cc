"""``python -m hsbench.store.migrations revision 000N "message"``: draft a migration.

Builds a throwaway SQLite database at the current head, diffs it against the
ORM (:mod:`hsbench.store.schema`) with Alembic's autogenerate and writes
``versions/000N_<message>.py``. Read and trim the draft before committing it.
"""

import sys

from hsbench.store.migrations import _new_revision

if len(sys.argv) != 4 or sys.argv[1] != "revision":
    sys.exit('usage: python -m hsbench.store.migrations revision 000N "what changed"')
script = _new_revision(sys.argv[2], sys.argv[3])
print(f"wrote {script.path}" if script is not None else "no revision written")
