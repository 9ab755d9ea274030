"""The governance sidecar (`meshsre sidecar`): an HTTP proxy beside an agent that holds its key
and credential, governs every tool call with the mesh and forwards the allowed ones."""
