# Moved to mesh.process; kept while helpers migrate.
from mesh.process import ADMIN_TOKEN, MeshProcess, free_port  # noqa: F401
