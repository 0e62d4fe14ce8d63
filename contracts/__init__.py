"""agenthost's typed surface for plugin authors: tokens, plugin manifest, hooks, events, models,
storage.

Everything public is re-exported here; each module lists its public names in ``__all__``.
This package holds types, protocols and the little code that only needs them (`MemoryManager`
pages through any `DatabaseAdapter`); no engine code and no I/O of its own. A store plugin may
also import the store kit, `host.storekit` (docs/storekit.md); nothing else of the host.
"""

from contracts.agent import *  # noqa: F403
from contracts.cache import *  # noqa: F403
from contracts.config import *  # noqa: F403
from contracts.errors import *  # noqa: F403
from contracts.events import *  # noqa: F403
from contracts.eventstore import *  # noqa: F403
from contracts.hooks import *  # noqa: F403
from contracts.logging import *  # noqa: F403
from contracts.memory import *  # noqa: F403
from contracts.metrics import *  # noqa: F403
from contracts.models import *  # noqa: F403
from contracts.plugin import *  # noqa: F403
from contracts.prompts import *  # noqa: F403
from contracts.services import *  # noqa: F403
from contracts.storage import *  # noqa: F403
from contracts.streaming import *  # noqa: F403
from contracts.tokens import *  # noqa: F403
from contracts.vector import *  # noqa: F403
